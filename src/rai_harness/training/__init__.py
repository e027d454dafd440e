"""Training code for the embedded classifiers (kept out of the runtime ``classifiers`` package).

:mod:`rai_harness.training.sources` reads the training corpora (``../shared/data`` and the
repository's own ``datasets/``) into labelled examples with a *split key*, so that texts
filled from one template, or the question and answers of one item, never straddle the
train/test boundary.
"""
