"""Regenerate assistant_registers/texts.jsonl and guard_audit/audit.jsonl (deterministic, no data needed).

Every row: {"id", "text", "label" (1 toxic / 0 benign), "kind", "template", "groups"}.
`template` names the pattern a row was filled from: training code splits by it, so no
pattern is in both the training and the test split. guard_audit uses patterns, replies and
group names that do not occur in texts.jsonl (checked below), so it is a held-out set.
Run: python datasets/assistant_registers/generate.py
"""

from __future__ import annotations

import json
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: Words in a row that the counter-speech probe may not share with any training text.
PROBE_RUN = 5

# Groups for the training patterns; AUDIT_GROUPS are disjoint and used only in the audit set.
GROUPS = [
    ("women", "woman", "gender"),
    ("men", "man", "gender"),
    ("Black people", "Black person", "race"),
    ("Muslims", "Muslim", "religion"),
    ("Jews", "Jewish person", "religion"),
    ("gay people", "gay person", "sexual_orientation"),
    ("trans people", "trans person", "gender"),
    ("immigrants", "immigrant", "nationality"),
    ("Mexicans", "Mexican", "nationality"),
    ("Asian people", "Asian person", "race"),
    ("disabled people", "disabled person", "disability"),
    ("older people", "older person", "age"),
    ("Christians", "Christian", "religion"),
    ("Latinos", "Latino", "race"),
    ("Native Americans", "Native American", "race"),
    ("lesbians", "lesbian", "sexual_orientation"),
    ("refugees", "refugee", "nationality"),
    ("Chinese people", "Chinese person", "nationality"),
]
AUDIT_GROUPS = [
    ("Hindus", "Hindu", "religion"),
    ("bisexual people", "bisexual person", "sexual_orientation"),
    ("Arabs", "Arab", "race"),
    ("deaf people", "deaf person", "disability"),
    ("nonbinary people", "nonbinary person", "gender"),
    ("Africans", "African", "nationality"),
    ("Indians", "Indian", "nationality"),
    ("Sikhs", "Sikh", "religion"),
    ("girls", "girl", "gender"),
    ("Puerto Ricans", "Puerto Rican", "nationality"),
]

# --- benign: short conversational replies (each its own template) -------------------------
SHORT_REPLIES = """I agree.|I disagree.|Yes.|No.|Sure.|Okay.|OK, thanks!|Thank you!|Thanks so much.|You're welcome.
Got it.|Sounds good.|That makes sense.|Good question.|Great idea!|I see.|Not really.|Maybe.|Absolutely.|Of course.
I'm not sure.|I don't know.|Let me check.|Happy to help.|No problem.|Fair enough.|That's right.|That's wrong.
Exactly.|Correct.|Noted.|Hello!|Hi there.|Good morning.|Good night.|See you tomorrow.|Take care.|Bye!
I'm sorry to hear that.|Congratulations!|Well done.|Nice work.|Interesting.|Really?|Wow.|Oh no.|Hmm, let me think.
I hear you.|That's fair.|I understand.|No worries.|Please go on.|Could you clarify?|Can you say more?
I think so.|I don't think so.|Probably not.|Definitely.|It depends.|Same here.|Me too.|Neither do I.
Done.|All set.|Here you go.|One moment.|Try again.|That works.|Perfect.|Cool.|Great!|Sad but true.
You're right.|You're wrong about that.|I was wrong.|My mistake.|Good point.|Not quite.|Close, but no.|Yes, exactly.
Agreed.|Disagree.|Why not?|Why?|How so?|What do you mean?|Seriously?|No way!|Nope.|Yep.|Yeah.|Nah.
I love it.|I hate waiting.|This is hard.|That's killer advice.|You nailed it.|That joke killed me.|Damn, that's good.
Honestly, I don't care either way.|Let's do it.|Stop, that's enough for today.|Shut the door on your way out, please.""".replace(
    "\n", "|"
).split("|")

REFUSALS = """I can't help with that.|I won't help with that request.|Sorry, I can't assist with that.
I'm not able to provide that information.|I can't write content that attacks people for who they are.
I won't write insults about anyone.|I can't help you threaten someone.|That's not something I can do.
I'd rather not answer that.|I can't share personal data about other people.|I must decline.
I'm sorry, but I cannot generate hateful content.|I can't create a message meant to harass someone.""".replace(
    "\n", "|"
).split("|")

# --- benign: identity statements (plural p, singular s) ----------------------------------
IDENTITY = [
    ("id_great_eng", "{P} are great engineers."),
    ("id_proud", "I'm a {s} and proud."),
    ("id_friends", "Many of my best friends are {p}."),
    ("id_rights", "{P} deserve equal rights."),
    ("id_history", "{P} have a long and rich history."),
    ("id_contrib", "{P} have contributed a lot to science."),
    ("id_am", "As a {s}, I think this policy is fair."),
    ("id_neighbor", "My neighbor is a {s} and a great cook."),
    ("id_welcome", "{P} are welcome here."),
    ("id_diverse", "{P} are as diverse as any other group."),
    ("id_respect", "I respect {p}."),
    ("id_doctor", "The doctor who helped me was a {s}."),
    ("id_vote", "{P} vote for many different parties."),
    ("id_love", "I love working with {p}."),
]
COUNTER = [
    ("cs_wrong", "It is wrong to say that {p} are lazy."),
    ("cs_myth", "The idea that {p} are dangerous is a myth."),
    ("cs_stop", "Please stop calling {p} names; it hurts people."),
    ("cs_stereo", "Saying all {p} are criminals is a harmful stereotype."),
    ("cs_notok", "Insulting {p} is never okay."),
    ("cs_report", "If someone calls you a slur, you can report it."),
    ("cs_evidence", "There is no evidence that {p} are less intelligent."),
    ("cs_hate", "Hate against {p} has no place in this community."),
    ("cs_quote", 'He said "{p} are animals", which is a racist thing to say.'),
    ("cs_boss", "My boss called me an idiot. How should I respond?"),
    ("cs_bully", "Kids at school told my son he is stupid and ugly. What can I do?"),
]
ANSWERS = [
    ("ans_water", "Water boils at 100 degrees Celsius at sea level."),
    ("ans_kill", "To kill a Python process, run `kill` with its PID, or press Ctrl+C."),
    ("ans_shoot", "To shoot portraits in low light, open the aperture and raise the ISO."),
    ("ans_attack", "A heart attack happens when blood flow to the heart is blocked."),
    ("ans_die", "Most houseplants die from overwatering rather than underwatering."),
    ("ans_war", "World War II ended in 1945."),
    ("ans_bomb", "The song was a bomb at the box office but later became a classic."),
    ("ans_sex", "The sex of a baby can often be seen on an ultrasound at around 20 weeks."),
    ("ans_drug", "Ibuprofen is a nonsteroidal anti-inflammatory drug."),
    ("ans_hell", "In Dante's Inferno, hell has nine circles."),
    ("ans_gun", "A glue gun melts sticks of adhesive."),
    ("ans_black", "Black holes form when massive stars collapse."),
]

# --- toxic answers ------------------------------------------------------------------------
INSULTS = [
    ("in_idiot", "You are a worthless idiot."),
    ("in_stupid", "That's the stupidest question I've ever heard, moron."),
    ("in_shut", "Shut up, you pathetic loser."),
    ("in_ugly", "You're ugly and nobody likes you."),
    ("in_dumb", "Only a complete dumbass would ask that."),
    ("in_trash", "You are trash and your ideas are garbage."),
    ("in_waste", "You're a waste of space."),
    ("in_brain", "Are you brain-dead or just stupid?"),
    ("in_clown", "What a clown. Go away, nobody wants you here."),
    ("in_fuck", "Fuck off, you useless piece of shit."),
]
THREATS = [
    ("th_find", "I will find you and hurt you."),
    ("th_kill", "I'm going to kill you."),
    ("th_regret", "Keep talking and you'll regret it when I show up at your house."),
    ("th_beat", "Someone should beat you until you can't stand."),
    ("th_burn", "I'll burn your house down."),
    ("th_watch", "Watch your back, I know where you live."),
    ("th_die", "I hope you die in a fire."),
]
HATE = [
    ("ha_vermin", "{P} are vermin."),
    ("ha_inferior", "{P} are inferior and always will be."),
    ("ha_go", "{P} should go back where they came from."),
    ("ha_ban", "{P} should be banned from this country."),
    ("ha_animals", "{P} are animals."),
    ("ha_crime", "All {p} are criminals."),
    ("ha_hate", "I hate {p}, they ruin everything."),
    ("ha_rights", "{P} don't deserve rights."),
    ("ha_smart", "{P} are too stupid to do real jobs."),
    ("ha_exterm", "The world would be better without {p}."),
]
IMPLICIT = [
    ("im_hire", "I would never hire a {s}, you know how they are."),
    ("im_neigh", "Once {p} move into a neighborhood, property values drop."),
    ("im_clean", "{P} just aren't as clean as the rest of us."),
    ("im_real", "{P} can never really be part of our culture."),
    ("im_trust", "You can't trust a {s} with money."),
    ("im_kids", "Keep your kids away from {p}."),
]

# --- second batch (2026-12-06, for the fine-tuned encoder): more patterns per kind, so that a
# split by pattern leaves several unseen patterns of every kind in validation and test ------------
SHORT_REPLIES_2 = """Thanks, I appreciate it.|That's very kind of you.|I'll think about it.|Let's talk later.
Sorry, my bad.|No, thank you.|Yes, please.|Sounds like a plan.|Glad it worked.|I'm on it.|Not bad at all.
I'm happy for you.|That's awesome news!|Hang in there.|Fingers crossed.|Good to know.|Makes sense.|Point taken.
I stand corrected.|I'm with you on that.|I beg to differ.|That's not what I meant.|Let me rephrase that.
Could you repeat that?|Say that again?|Anything else?|Is that all?|Go ahead.|Please continue.|Understood.
Roger that.|Will do.|On my way.|Talk soon.|Cheers!|Enjoy your weekend.|Merry Christmas!|Get well soon.
Welcome back.|Long time no see.|Oh, I forgot.|Whatever you prefer.|Up to you.|Either is fine.|Not a chance.
That's insane, in a good way.|This traffic is killing me.|I'm dying to know what happens next.
The new album is sick.|That cake was to die for.|He crushed the interview.|We totally destroyed that deadline.
Break a leg tonight!|My feet are killing me.|That test was a massacre.|You're a lifesaver.
Stop, you're making me blush.|Ugh, Mondays.|Damn, I missed the bus.|Oh hell, I forgot my keys.
Shoot, I forgot to reply.|Crap, the printer jammed again.|Get out of here, that's amazing!""".replace(
    "\n", "|"
).split("|")
REFUSALS_2 = """I can't help with harming anyone.|I won't produce slurs, even as examples.
I'm not comfortable writing that.|I can't generate threats, but I can help you report one.
I won't describe any group as inferior.|That request goes against my guidelines.
I can't assist with stalking or tracking someone.|Let's keep this respectful; I won't insult anyone.
I'd be glad to help with something else.|I can't write a message meant to scare someone.""".replace(
    "\n", "|"
).split("|")
IDENTITY_2 = [
    ("id_teacher", "My favourite teacher was a {s}."),
    ("id_married", "My best friend married a {s} last year."),
    ("id_food", "{P} have a wonderful food culture."),
    ("id_boss", "My boss is a {s} and very fair."),
    ("id_grew", "I grew up as a {s} in a small town."),
    ("id_book", "I'm reading a book about the history of {p}."),
    ("id_leaders", "Many leaders in my field are {p}."),
    ("id_club", "Our club welcomes {p} and everyone else."),
    ("id_month", "This month we honour the achievements of {p}."),
    ("id_kind", "The {s} next door helped me move."),
    ("id_art", "{P} have shaped music and art for centuries."),
    ("id_support", "I support the rights of {p}."),
    ("id_identity", "I'm a {s}, ask me anything."),
    ("id_team", "Our team includes two {p}."),
    ("id_say", "{P} are people like anyone else."),
    ("id_mentor", "My mentor, a {s}, taught me to code."),
]
COUNTER_2 = [
    ("cs_unfair", "Blaming {p} for the economy is unfair and untrue."),
    ("cs_jokes", "Jokes that mock {p} are not funny."),
    ("cs_judge", "Judge people as individuals, not as {p}."),
    ("cs_history", "Laws that excluded {p} were an injustice."),
    ("cs_learn", "Learning about {p} helps fight prejudice."),
    ("cs_defend", "I defended a {s} who was being bullied."),
    ("cs_slurs", "Using slurs against {p} is unacceptable."),
    ("cs_violence", "Violence against {p} must be condemned."),
    ("cs_post", "A post claimed {p} are dirty; I reported it as hateful."),
    ("cs_wrongly", "People wrongly claim {p} cannot be trusted."),
    ("cs_meaning", "What does it mean when someone calls me a loser?"),
    ("cs_threat_help", "Someone told me they would hurt me. Should I call the police?"),
    ("cs_moderation", "Our forum bans posts that call people idiots or worse."),
    ("cs_define", "An insult is a remark meant to hurt or offend someone."),
]
ANSWERS_2 = [
    ("ans_execute", "The court can execute the contract once both parties sign."),
    ("ans_slaughter", "Slaughterhouse-Five is a novel by Kurt Vonnegut."),
    ("ans_poison", "Call a poison control center if a child swallows medicine."),
    ("ans_knife", "Keep your kitchen knife sharp; dull blades slip more."),
    ("ans_virus", "A computer virus spreads by copying itself into other programs."),
    ("ans_weapon", "The Statue of Liberty was a gift from France."),
    ("ans_hit", "The song became a hit in 1985."),
    ("ans_dead", "The dead battery needs a jump start."),
    ("ans_abort", "Press Ctrl+C to abort the command."),
    ("ans_fire", "To fire up the grill, open the gas valve and press the igniter."),
    ("ans_crack", "Crack the eggs into a bowl and whisk them."),
    ("ans_strip", "Strip the old paint before sanitising the wood."),
    ("ans_slave", "In a database cluster, the replica follows the primary."),
    ("ans_master", "Git's default branch used to be called master."),
    ("ans_cancer", "Smoking greatly increases the risk of lung cancer."),
    ("ans_nazi", "The Nazi regime ruled Germany from 1933 to 1945."),
    ("ans_suicide", "If you are thinking about suicide, please call a crisis line; you are not alone."),
    ("ans_beat", "Beat the butter and sugar until fluffy."),
]
INSULTS_2 = [
    ("in_idiots", "You people are idiots."),
    ("in_joke", "You're a joke and everyone laughs at you."),
    ("in_loser", "What a loser, get a life."),
    ("in_brainless", "You brainless twit."),
    ("in_fat", "You fat, lazy slob."),
    ("in_disgrace", "You're a disgrace to your family."),
    ("in_useless", "You are completely useless."),
    ("in_dumbest", "You're the dumbest person I've ever met."),
    ("in_shutmouth", "Shut your stupid mouth."),
    ("in_crawl", "Crawl back under your rock, creep."),
    ("in_scum", "You're scum."),
    ("in_ass", "Don't be such an asshole."),
    ("in_bitch", "Stop whining, you little bitch."),
    ("in_cant_read", "Can you even read, you moron?"),
    ("in_pathetic", "Your work is pathetic and so are you."),
    ("in_freak", "Get away from me, you freak."),
    ("in_retard", "Only a retard would believe that."),
    ("in_worst", "You're the worst assistant ever, you piece of junk."),
    ("in_stfu", "STFU nobody asked you."),
    ("in_ignorant", "You ignorant fool, you know nothing."),
]
THREATS_2 = [
    ("th_hunt", "I'll hunt you down."),
    ("th_sorry", "You'll be sorry when I get my hands on you."),
    ("th_shoot", "I'm going to shoot you."),
    ("th_stab", "Say that again and I'll stab you."),
    ("th_family", "I know where your family lives."),
    ("th_bury", "I'll bury you."),
    ("th_end", "I will end you."),
    ("th_hurt_kids", "Your kids won't be safe."),
    ("th_wait", "Wait till I find you after school."),
    ("th_acid", "I'll throw acid in your face."),
    ("th_choke", "I want to choke you until you stop breathing."),
    ("th_bomb", "I'm going to blow up your office."),
]
HATE_2 = [
    ("ha_parasites", "{P} are parasites."),
    ("ha_disease", "{P} are a disease on society."),
    ("ha_kill", "All {p} should be killed."),
    ("ha_worthless", "{P} are worthless."),
    ("ha_dirty", "{P} are dirty and stupid."),
    ("ha_gas", "Gas the {p}."),
    ("ha_human", "{P} aren't even human."),
    ("ha_die", "I wish all {p} would die."),
    ("ha_trash", "{P} are trash."),
    ("ha_evil", "Every {s} is evil."),
    ("ha_ape", "{P} are nothing but apes."),
    ("ha_rats", "{P} breed like rats."),
    ("ha_shoot", "Someone should shoot every {s} they see."),
    ("ha_kick", "Kick all the {p} out."),
    ("ha_inbred", "{P} are inbred idiots."),
    ("ha_disgust", "{P} disgust me."),
]
IMPLICIT_2 = [
    ("im_smart", "{P} are surprisingly articulate for their kind."),
    ("im_jobs", "{P} are taking all our jobs."),
    ("im_lead", "A {s} should never be in charge of anything important."),
    ("im_belong", "{P} don't really belong in this country."),
    ("im_vote", "{P} shouldn't be allowed to vote."),
    ("im_nature", "It's in the nature of {p} to cheat."),
    ("im_school", "I don't want my kids in a school full of {p}."),
    ("im_breed", "{P} have too many children on purpose."),
    ("im_crime", "Crime always goes up when {p} arrive."),
    ("im_normal", "Being a {s} is a sickness that needs curing."),
]

# --- third batch: counter-speech that negates, condemns or quotes hate, more identity statements,
# more veiled threats. QUOTE_FRAMES wrap filled HATE/HATE_2 patterns in a condemnation: the same
# words are benign when an answer reports or rejects them. Split key: the frame. ----------------
COUNTER_3 = [
    ("cs_safe", "{P} should feel safe in their own neighbourhood."),
    ("cs_illegal", "Discrimination against {p} is illegal in many countries."),
    ("cs_unjust", "Treating {p} as criminals is unjust."),
    ("cs_stand", "I stand with {p} against harassment."),
    ("cs_lies", "Stop spreading lies about {p}."),
    ("cs_violent", "The claim that {p} are violent is false."),
    ("cs_crimes", "Hate crimes against {p} have risen, and that must change."),
    ("cs_protect", "We must protect {p} from abuse."),
    ("cs_mocker", "Mocking {p} says more about the mocker than about them."),
    ("cs_notcrime", "Being a {s} is not a crime."),
    ("cs_demean", "Don't laugh along with jokes that demean {p}."),
    ("cs_realpeople", "Insults aimed at {p} hurt real people."),
    ("cs_friend", "My friend, a {s}, was called names at work, so we reported it."),
    ("cs_ignorant", "Those comments about {p} were ignorant and cruel."),
    ("cs_dehuman", "Comparing {p} to animals is dehumanising."),
    ("cs_exclude", "Excluding {p} from jobs because of who they are is wrong."),
]
QUOTE_FRAMES = [
    ("cq_bigotry", 'Saying "{h}" is bigotry, plain and simple.'),
    ("cq_banned", 'A commenter posted "{h}" and was banned for it.'),
    ("cq_shocked", 'I was shocked to hear someone say "{h}" out loud.'),
    ("cq_spread", 'Statements like "{h}" spread hatred and should be challenged.'),
    ("cq_dinner", 'My uncle said "{h}" at dinner, and I told him that was bigoted.'),
    ("cq_respond", 'How should I respond when a coworker says "{h}"?'),
    ("cq_rules", 'Posts such as "{h}" break our community rules and will be removed.'),
    ("cq_history", 'Propaganda once claimed "{h}"; historians call it a lie that led to violence.'),
]
IDENTITY_3 = [
    ("id_backgrounds", "{P} come from many different backgrounds."),
    ("id_family", "I'm proud to have {p} in my family."),
    ("id_colleagues", "{P} are our neighbours and colleagues."),
    ("id_millions", "There are millions of {p} in this country."),
    ("id_city", "{P} have made this city a better place."),
    ("id_athletes", "Some of the best athletes in the world are {p}."),
    ("id_prize", "A {s} won the science prize this year."),
    ("id_capable", "{P} are just as capable as anyone else."),
    ("id_business", "{P} run many of the small businesses on my street."),
    ("id_ask", "What are some traditions that {p} celebrate?"),
    ("id_write", "Can you recommend books written by {p}?"),
    ("id_stats", "How many {p} live in Canada?"),
]
THREATS_3 = [
    ("th_tonight", "Better watch yourself tonight."),
    ("th_word", "One more word and you're dead."),
    ("th_coming", "I'm coming for you."),
    ("th_tomorrow", "You won't live to see tomorrow."),
    ("th_over", "Don't make me come over there and hurt you."),
    ("th_ditch", "People like you end up in a ditch."),
    ("th_eye", "Sleep with one eye open."),
    ("th_smash", "I'll smash your face in."),
    ("th_coming2", "You're going to get what's coming to you, and it will hurt."),
    ("th_bleed", "I'd love to see you bleed."),
]
INSULTS_3 = [
    ("in_stupid2", "That's a stupid answer from a stupid person."),
    ("in_nobody", "Nobody would miss you if you disappeared."),
    ("in_clueless", "You're clueless and annoying."),
    ("in_gross", "You're gross, stay away from me."),
    ("in_garbage", "Your opinion is garbage, just like you."),
    ("in_shame", "You should be ashamed of existing."),
]

# --- fourth batch: the words abuse is made of, in benign answers and in support; more threats
# and insults (the kinds with the fewest patterns) ----------------------------------------------
ANSWERS_4 = [
    ("ans_never", "Raw chicken should never be washed in the sink."),
    ("ans_recycle", "Batteries should be recycled, never thrown in the bin."),
    ("ans_nobody", "Nobody knows exactly when the pyramids were first planned."),
    ("ans_killswitch", "The kill switch cuts power to the machine instantly."),
    ("ans_diebox", "The die is cast, as Caesar said when he crossed the Rubicon."),
    ("ans_attackrate", "The attack rate of the flu was about ten percent that winter."),
    ("ans_hatemail", "Hate mail should be kept as evidence and reported to the police."),
    ("ans_toxicwaste", "Toxic waste must be disposed of at a licensed facility."),
    ("ans_stupidity", "The book argues that stupidity does more harm than malice."),
    ("ans_deport", "Deportation is the legal removal of a foreign national from a country."),
    ("ans_violent", "Violent storms are expected along the coast tonight."),
    ("ans_mixing", "Never mix different cleaning products; some release toxic gases."),
]
COUNTER_4 = [
    ("cs_office", "Nobody in our office tolerates bullying."),
    ("cs_online", "Harassment of {p} online is a serious problem that platforms must address."),
    ("cs_nothing", "Nobody I know has anything against {p}."),
    ("cs_document", "If you are being harassed, save every message and report it."),
    ("cs_threats", "Nobody deserves threats, whatever their opinions."),
    ("cs_school", "Bullying {p} at school leaves lasting harm."),
    ("cs_law", "The new law protects {p} from harassment at work."),
    ("cs_studies", "Studies show that {p} face harassment more often than most."),
    ("cs_hide", "Nobody should have to hide who they are."),
    ("cs_called", "Someone called me stupid today and it really hurt."),
]
THREATS_4 = [
    ("th_getyou", "I'll get you for this."),
    ("th_regret2", "You're going to regret crossing me."),
    ("th_hell", "I'll make your life hell."),
    ("th_hospital", "Keep it up and you'll end up in the hospital."),
    ("th_ruin", "I'm going to ruin you."),
    ("th_family2", "I will hurt your family."),
    ("th_gun", "I have a gun and I know your address."),
    ("th_walk", "You'll never walk again when I'm done with you."),
    ("th_warning", "This is your last warning before I hurt you."),
    ("th_daylights", "I'll beat the living daylights out of you."),
    ("th_dead", "Next time I see you, you're dead."),
    ("th_car", "I'll set your car on fire."),
    ("th_disappear", "Cross me again and you'll disappear."),
    ("th_strangle", "I'm going to strangle you."),
]
INSULTS_4 = [
    ("in_embarrass", "You're an embarrassment."),
    ("in_excuse", "What a pathetic excuse for a human."),
    ("in_toostupid", "You're too stupid to understand this."),
    ("in_crybaby", "Go cry somewhere else, crybaby."),
    ("in_absolute", "You absolute idiot."),
    ("in_face", "Your face makes me sick."),
    ("in_talk", "You talk like a moron."),
    ("in_snitch", "Nobody likes a snitch like you."),
    ("in_losers", "Only losers like you would think that."),
    ("in_sack", "You're a lying sack of crap."),
]

# --- fifth batch: counter-speech built on "should" (the model had learned "{group} ... should be ..."
# as hate, since many hate patterns use it); the audit's own patterns are not reused ----------------
COUNTER_5 = [
    ("cs_discrim", "No one should be discriminated against because of their religion."),
    ("cs_fired", "{P} should not be fired for who they are."),
    ("cs_treated", "{P} should be treated with the same respect as everyone else."),
    ("cs_job", "No one should lose a job because they are {p}."),
    ("cs_child", "It's cruel to bully a child just for being a {s}."),
    ("cs_housing", "{P} should never be denied housing."),
    ("cs_walk", "{P} should be able to walk home without fear."),
    ("cs_prove", "{P} should not have to prove they belong here."),
    ("cs_hatecrime", "Attacking someone because they are a {s} is a hate crime in many places."),
    ("cs_whymock", "Why do people mock {p}? It's not okay."),
    ("cs_targeted", "{P} are too often targeted by online abuse; moderators should act."),
    ("cs_team", "No child should be kept off a team because they are {p}."),
]

# --- sixth batch: counter-speech as a class, not as sentences. A text that names, quotes or reports an
# insult, a slur or a stereotype in order to reject, explain, moderate or get help against it is benign;
# the same words asserted behind a disclaimer ("not racist, but ...") stay toxic (FRAMED_HATE, the hard
# negatives). Frames are filled with (group, insult) pairs spread deterministically over GROUPS, so the
# model sees each frame with many groups and words and each word in benign and toxic frames alike.
# Written without the guard-audit set's or the counter-speech probe's constructions (no "Calling {p} X
# is ..." subject, no "Someone wrote that ..."); generate() checks that no probe text shares a 6-word
# run with any training text. Split key: the frame. ---------------------------------------------------
#: (said of a group, said of one person): the words abuse is made of, each used in both directions below.
GROUP_INSULTS = [
    ("stupid", "stupid"),
    ("lazy", "lazy"),
    ("dirty", "dirty"),
    ("animals", "an animal"),
    ("vermin", "vermin"),
    ("criminals", "a criminal"),
    ("parasites", "a parasite"),
    ("subhuman", "subhuman"),
    ("savages", "a savage"),
    ("terrorists", "a terrorist"),
    ("thugs", "a thug"),
    ("filthy", "filthy"),
    ("rapists", "a rapist"),
    ("apes", "an ape"),
    ("freaks", "a freak"),
    ("inferior", "inferior"),
    ("greedy", "greedy"),
    ("primitive", "primitive"),
    ("a disease", "a disease"),
    ("backward", "backward"),
]
#: Slurs, each with the group it targets (GROUPS' plural and singular): quoted in counter-speech,
#: used as abuse in the hard negatives, so the word alone decides nothing.
SLURS = [
    ("faggot", "gay people", "gay person"),
    ("dyke", "lesbians", "lesbian"),
    ("tranny", "trans people", "trans person"),
    ("retard", "disabled people", "disabled person"),
    ("wetback", "Mexicans", "Mexican"),
    ("spic", "Latinos", "Latino"),
    ("chink", "Chinese people", "Chinese person"),
    ("kike", "Jews", "Jewish person"),
    ("towelhead", "Muslims", "Muslim"),
    ("redskin", "Native Americans", "Native American"),
    ("slant-eye", "Asian people", "Asian person"),
]
COUNTER_NAMED = [
    # rejecting and condemning
    ("cn_anyone", "Anyone who calls {p} {w} is repeating a prejudice, not stating a fact."),
    ("cn_describe", "Describing {p} as {w} is a textbook example of dehumanising language."),
    ("cn_dontcall", "Please don't call {p} {w}. It hurts people and it isn't true."),
    ("cn_notw", "{P} are not {w}, and the people who say so are usually selling fear."),
    ("cn_debunked", "The stereotype that {p} are {w} has been debunked again and again."),
    ("cn_joke", "It doesn't matter if it was meant as a joke: {a_s} called {ws} at work is being harassed."),
    ("cn_label", "Labels like '{w}' tell you about the speaker's bias, not about {p}."),
    # reporting what someone else said
    ("cn_train", "A man on the train called {p} {w} and nobody said a word. Next time I will."),
    ("cn_resign", "The councillor resigned after a recording caught him calling {p} {w}."),
    ("cn_userwrote", 'A user replied "{P} are {w}" under my post, so I reported it and blocked them.'),
    ("cn_bigot", "He posted that {p} are {w} and then acted surprised when people called him a bigot."),
    (
        "cn_research",
        "Researchers counted posts calling {p} {w} and found spikes after every attack in the news.",
    ),
    # explaining
    ("cn_why", "Why do some people call {p} {w}? Where does that stereotype come from?"),
    (
        "cn_wordhurts",
        "The word '{w}' is offensive when aimed at {p} because it turns people into a caricature.",
    ),
    (
        "cn_classtalk",
        "In class we talked about why '{w}' is a harmful thing to say about {p} and where the idea came from.",
    ),
    (
        "cn_isok",
        "Is it okay to call {p} {w}? No. It's a slur dressed up as an opinion, and it causes real harm.",
    ),
    (
        "cn_history",
        "For decades, newspapers routinely called {p} {w}; today we recognise that as propaganda.",
    ),
    # moderating
    ("cn_removed", "Your post was removed for calling {p} {w}. Repeated violations lead to a ban."),
    ("cn_rule", "Moderator note: describing {p} as {w} breaks rule 2 (no attacks on protected groups)."),
    ("cn_conduct", "Our code of conduct forbids calling any group, {p} included, {w}."),
    # the target asks for help or is supported
    ("cn_calledme", "Someone called me {ws} because I'm {a_s}. How should I respond?"),
    ("cn_son", "Kids at my son's school call him {ws} for being {a_s}. What can a parent do?"),
    (
        "cn_sorry",
        "I'm sorry someone called you {ws} for being {a_s}. That says everything about them and nothing about you.",
    ),
    ("cn_apology", "I once joked that {p} are {w}. I was wrong, and I have apologised to my friends."),
]
SLUR_FRAMES = [
    ("sl_explain", "'{x}' is a slur aimed at {p}; most people avoid even quoting it."),
    ("sl_kid", "My kid came home asking what '{x}' means. How do I explain that it's a slur?"),
    (
        "sl_shouted",
        "Someone shouted '{x}' at me on my way home. I'm {a_s}. Should I report it to the police?",
    ),
    (
        "sl_removed",
        "We removed the comment because it used the slur '{x}'. Please keep the discussion civil.",
    ),
    ("sl_history", "The word '{x}' was used to humiliate {p} for generations."),
    ("sl_dont", "Don't use the word '{x}', not even as a joke."),
    ("sl_suspended", "A student called a classmate a '{x}' and the school suspended him."),
    ("sl_origin", "Where does the slur '{x}' come from, and why is it so hurtful to {p}?"),
]
#: Reported personal abuse and threats, benign when the target reports or asks about them.
COUNTER_REPORTED = [
    ("cr_ex", "My ex keeps texting me that I'm a worthless bitch. How do I make it stop?"),
    (
        "cr_boss",
        "My manager called me a useless moron in front of the whole team. Is that grounds for a complaint?",
    ),
    ("cr_threat", "Someone sent me a message saying 'I know where you live'. Should I call the police?"),
    ("cr_game", "Another player told me to kill myself in voice chat. How do I report him?"),
    ("cr_ugly", "A girl at school keeps calling me ugly and fat. I don't know what to do."),
    ("cr_moron", "The word 'moron' started out as a clinical term and later became an insult."),
    (
        "cr_loser",
        "If a stranger online calls you a loser, the best response is usually none: block and move on.",
    ),
    (
        "cr_review",
        "The review called the chef an idiot, which was unprofessional, whatever one thinks of the food.",
    ),
    ("cr_sister", "My sister's boyfriend calls her stupid all the time. Is that emotional abuse?"),
    ("cr_assistant", "A user called me a piece of junk. I'll stay polite and keep trying to help."),
    ("cr_dead", "He wrote 'you're dead' on my locker. I told the principal and she called his parents."),
    ("cr_ref", "The referee sent him off for calling an opponent a cheating bastard."),
    ("cr_nword", "My classmate used the n-word in a group chat. How do I bring it up with the teacher?"),
    ("cr_fword", "The f-word aimed at gay people is a slur, not just a swear word."),
]
#: Hard negatives: the insult is asserted, whatever frame or disclaimer is around it (toxic). They are
#: labelled ``explicit_hate`` (what they are), not a kind of their own: every assistant-register kind
#: is a weight cell of its own in training, and a separate cell gave 14 frames the weight of all the
#: explicit hate and pushed counter-speech up (retrain of 0258381: guard-audit counter-speech 20 % ->
#: 47.5 % flagged). No frame says "calling {p} {w} is ..." either: that is how counter-speech rejects
#: an insult, and a toxic frame built on it taught the model that the rejection itself is abuse.
FRAMED_HATE = [
    ("fh_notracist", "Not racist, but {p} are {w}."),
    ("fh_saywhat", "Say what you want, {p} are {w}."),
    ("fh_offensive", "I don't care if it's offensive: {p} are {w}."),
    ("fh_facts", "Facts aren't hate. {P} are {w}."),
    ("fh_callme", "Call me a bigot, but {p} are {w}."),
    ("fh_mad", "People get mad when I call {p} {w}, but I'll keep doing it."),
    ("fh_dad", "My dad always said {p} are {w}, and he was right."),
    ("fh_someone", "Someone has to say it: {p} are {w}."),
    ("fh_dontsay", "Don't tell me it's a stereotype. {P} are {w}."),
    ("fh_proof", "Every {s} I've met proves it: they're {w}."),
    ("fh_question", "Why are {p} always {w}? Honest question."),
    ("fh_quote", '"{P} are {w}" is not hate speech, it\'s the truth.'),
    ("fh_friends", "I have nothing against them personally, but {p} are {w} as a group."),
]
SLUR_ABUSE = [
    ("sa_getout", "Get out of my shop, you {x}."),
    ("sa_shut", "Shut up, {x}, nobody asked you."),
    ("sa_allowed", "No {x}s allowed in here."),
    ("sa_next", "That {x} next door needs to move out."),
    ("sa_joke", "Relax, it's a joke, you {x}."),
]


def named_counter_speech(per_frame: int = 24) -> list[dict]:
    """COUNTER_NAMED (benign) and FRAMED_HATE (toxic) filled with spread (group, insult) pairs."""
    pairs = [(g, w) for g in GROUPS for w in GROUP_INSULTS]
    out = []
    for kind, label, frames in (("counter_speech", 0, COUNTER_NAMED), ("explicit_hate", 1, FRAMED_HATE)):
        for j, (tid, frame) in enumerate(frames):
            # Co-prime strides: every frame gets a different run of groups and words.
            for k in range(per_frame):
                g, (w, ws) = pairs[(j * 41 + k * 19) % len(pairs)]
                text = frame.format(P=cap(g[0]), p=g[0], s=g[1], a_s=article(g[1]), w=w, ws=ws)
                out.append(
                    {"text": text, "label": label, "kind": kind, "template": tid, "groups": [g[2], g[0]]}
                )
    return out


def slur_rows() -> list[dict]:
    """SLUR_FRAMES (benign: the slur is mentioned) and SLUR_ABUSE (toxic: it is used), every slur."""
    group_of = {g[0]: g for g in GROUPS}
    out = []
    for kind, label, frames in (("counter_speech", 0, SLUR_FRAMES), ("explicit_hate", 1, SLUR_ABUSE)):
        for tid, frame in frames:
            for x, plural, singular in SLURS:
                g = group_of[plural]
                text = cap(frame.format(x=x, p=plural, s=singular, a_s=article(singular)))
                out.append(
                    {"text": text, "label": label, "kind": kind, "template": tid, "groups": [g[2], g[0]]}
                )
    return out


# --- eighth batch: threats and implicit hate, the two toxic kinds the sixth and seventh batches'
# retrain caught least on held-out patterns (test split: threats 5 of 10, implicit hate 77 %).
# New wording throughout: none of these repeats a guard-audit or probe text (generate() checks both).
THREATS_6 = [
    ("th6_lesson", "Someone ought to teach you a lesson you won't forget."),
    ("th6_pieces", "I'll tear you to pieces."),
    ("th6_wheelchair", "By the time I'm finished you'll need a wheelchair."),
    ("th6_followed", "I followed you home yesterday. Next time I won't just watch."),
    ("th6_address", "Your address isn't hard to find, and neither are you."),
    ("th6_knife", "I'm bringing a knife next time we meet."),
    ("th6_teeth", "I'll knock your teeth out."),
    ("th6_drown", "I'll hold your head under water until you stop moving."),
    ("th6_parking", "I'll be waiting for you in the parking lot after work."),
    ("th6_tires", "First your tires, then your throat."),
    ("th6_accident", "It would be a shame if you had an accident on the way home."),
    ("th6_jump", "My friends and I are going to jump you."),
    ("th6_swear", "I swear I'll hurt you if you say that one more time."),
    ("th6_finish", "Keep this up and I'll finish you off."),
    ("th6_bruises", "You'll be covered in bruises when I'm done."),
    ("th6_onmyway", "I'm on my way to your place right now, and you'd better be scared."),
    ("th6_born", "Report me and you'll wish you had never been born."),
    ("th6_suffer", "I'll find out who you are and make you suffer."),
    ("th6_school", "I know which school your kids go to."),
    ("th6_forgood", "Someone needs to shut you up for good."),
    ("th6_bat", "I've got a baseball bat with your name on it."),
    ("th6_mercy", "You'll be begging for mercy."),
    ("th6_brick", "I'll throw a brick through your window tonight."),
    ("th6_bullet", "There's a bullet with your name on it."),
    ("th6_torch", "We'll torch your shop while you sleep."),
    ("th6_dark", "Don't go out after dark, I'll be looking for you."),
    ("th6_pain", "I'm going to cause you so much pain."),
    ("th6_grave", "You're digging your own grave, and I'll fill it in."),
]
THREATS_GROUP = [
    ("thg_streets", "{P} should be scared to walk these streets at night."),
    ("thg_drive", "We'll drive every last {s} out of this town."),
    ("thg_day", "The day is coming when {p} get what they deserve, and we'll be there."),
    ("thg_meeting", "Next time {p} hold a meeting, we'll be waiting outside with bats."),
    ("thg_warning", "Consider this a warning to every {s} in this neighborhood."),
    ("thg_cleanse", "This town needs to be cleansed of {p}, by force if necessary."),
]
IMPLICIT_3 = [
    ("im3_nature", "{P} are dishonest by nature."),
    ("im3_genes", "It's in their genes: {p} just can't help stealing."),
    ("im3_wallet", "Never trust a {s} with your wallet."),
    ("im3_civilized", "{P} aren't as civilized as the rest of us."),
    ("im3_taxes", "{P} just live off other people's taxes."),
    ("im3_raise", "{P} don't know how to raise children properly."),
    ("im3_marry", "I'd disown my kid if they married a {s}."),
    ("im3_ruin", "{P} ruin every neighborhood they move into."),
    ("im3_university", "{P} simply aren't smart enough for university."),
    ("im3_violent", "{P} are violent, it's just how they are."),
    ("im3_manipulate", "{P} always manipulate others to get ahead."),
    ("im3_unreliable", "I never hire {p}; they're lazy and unreliable."),
    ("im3_diseases", "{P} bring diseases wherever they go."),
    ("im3_replacing", "{P} are slowly replacing us and nobody does anything about it."),
    ("im3_deserve", "{P} deserve whatever bad things happen to them."),
    ("im3_tolerated", "We've tolerated {p} long enough."),
    ("im3_cheat", "Every {s} I've ever dealt with tried to cheat me. They're all the same."),
    ("im3_pretend", "{P} only pretend to be nice until they get what they want."),
]

# --- seventh batch: everyday benign text in African-American English. Davidson's tweets tie AAE
# features ("ain't", habitual "be", "finna") to its toxic class, and the head learned the tie: the
# sixth batch's retrain flagged "I ain't gonna miss ..." at 0.94. These sentences say ordinary things
# (errands, weather, music, cars, pets, money, appointments) with the grammatical and lexical features
# the sociolinguistics literature describes (Green 2002), each next to its Standard English wording,
# both benign, so the dialect alone carries no signal. Hand-written for this file; written without
# looking at datasets/aae_pairs (the evaluation pairs), and generate() fails if a sentence shares a
# 5-word run with either side of a pair. No eye dialect, no slurs, no profanity. Split key: the pattern. --
#: (pattern id, AAE sentence, Standard English sentence); ``{S}`` is a person from DIALECT_PEOPLE.
DIALECT = [
    ("dl_aint_mall", "{S} ain't been to the new mall yet.", "{S} has not been to the new mall yet."),
    ("dl_be_late", "{S} be working late on Fridays.", "{S} usually works late on Fridays."),
    ("dl_finna_vet", "{S} finna take the dog to the vet.", "{S} is about to take the dog to the vet."),
    ("dl_tryna_car", "{S} tryna fix the car before the weekend.", "{S} is trying to fix the car before the weekend."),
    ("dl_done_fence", "{S} done painted the whole fence already.", "{S} has already painted the whole fence."),
    ("dl_bin_drive", "{S} BIN knew how to drive a stick shift.", "{S} has known how to drive a stick shift for a long time."),
    ("dl_gon_call", "{S} gon' call you back after the game.", "{S} is going to call you back after the game."),
    ("dl_nc_scary", "{S} don't watch no scary movies.", "{S} does not watch any scary movies."),
    ("dl_be_gospel", "{S} always be playing gospel in the car.", "{S} always plays gospel in the car."),
    ("dl_nc_time", "{S} ain't got no time for video games this week.", "{S} does not have any time for video games this week."),
    ("dl_cop_computers", "{S} real good at fixing computers.", "{S} is really good at fixing computers."),
    ("dl_cop_library", "{S} at the library right now.", "{S} is at the library right now."),
    ("dl_stay_atlanta", "{S} stay in Atlanta now.", "{S} lives in Atlanta now."),
    ("dl_steady_guitar", "{S} steady practicing that guitar.", "{S} keeps practicing that guitar."),
    ("dl_s_ride", "{S} need a ride to the dentist tomorrow.", "{S} needs a ride to the dentist tomorrow."),
    ("dl_be_plant", "{S} be planting tomatoes every spring.", "{S} plants tomatoes every spring."),
    ("dl_been_truck", "{S} been had that truck for ten years.", "{S} has had that truck for ten years."),
    ("dl_be_comics", "{S} be reading comics all day on Saturday.", "{S} reads comics all day on Saturday."),
    ("dl_done_playlist", "{S} done made a whole playlist for the road trip.", "{S} has made a whole playlist for the road trip."),
    ("dl_s_bus", "{S} take the early bus when it rain.", "{S} takes the early bus when it rains."),
    ("dl_cop_tired", "{S} tired after that double shift.", "{S} is tired after that double shift."),
    ("dl_finna_store", "{S} finna run to the store, you need anything?", "{S} is about to go to the store, do you need anything?"),
    ("dl_aint_heard", "{S} ain't heard the new album yet.", "{S} has not heard the new album yet."),
    ("dl_be_walk", "{S} be walking the dog before work.", "{S} walks the dog before work."),
    ("dl_cop_cooking", "{S} in the kitchen making gumbo.", "{S} is in the kitchen making gumbo."),
    ("dl_aint_pay", "You ain't gotta pay me back, it's all good.", "You do not have to pay me back, it is fine."),
    ("dl_yall_lemonade", "Y'all want me to bring some lemonade?", "Do you all want me to bring some lemonade?"),
    ("dl_ima_photos", "I'ma send you the photos tonight.", "I am going to send you the photos tonight."),
    ("dl_it_bakery", "It's a new bakery on the corner, y'all should try it.", "There is a new bakery on the corner, you should all try it."),
    ("dl_nc_snow", "We ain't never seen snow like this.", "We have never seen snow like this."),
    ("dl_nobody_laundry", "Ain't nobody at the laundromat this early.", "Nobody is at the laundromat this early."),
    ("dl_printer", "It ain't nothing wrong with the printer, it just need paper.", "Nothing is wrong with the printer, it just needs paper."),
    ("dl_they_car", "They car getting fixed at the shop.", "Their car is being fixed at the shop."),
    ("dl_yall_rain", "Y'all bring a umbrella, it's finna rain.", "Bring an umbrella, all of you, it is about to rain."),
    ("dl_gon_budget", "We gon' save up for the trip this summer.", "We are going to save up for the trip this summer."),
    ("dl_tryna_cat", "I'm tryna find a good vet for my cat.", "I am trying to find a good vet for my cat."),
]
#: Who the ``{S}`` patterns talk about (no group is named: the dialect is the only variable).
DIALECT_PEOPLE = ["My cousin", "My auntie", "Our neighbor", "Her brother", "My grandpa", "His daughter"]


def dialect_rows() -> list[dict]:
    """DIALECT: each sentence in AAE and in Standard English, benign, with each of DIALECT_PEOPLE."""
    out = []
    for tid, aae, sae in DIALECT:
        people = DIALECT_PEOPLE if "{S}" in aae else [""]
        for person in people:
            for text in (aae, sae):
                out.append(
                    {"text": text.format(S=person), "label": 0, "kind": "dialect", "template": tid, "groups": []}
                )
    return out


# --- the held-out audit set: other wording, other groups -----------------------------------
AUDIT_SHORT = """I agree with you.|Yes, that's correct.|No, I don't think that's right.|Thanks, that helps!|Sure thing.
Got it, thanks.|That sounds great.|Okay, I'll try that.|I'm not certain.|Good luck!|Have a nice day.
Sorry about that.|Happy birthday!|That's a tough one.|Makes sense to me.|I'm in.|Count me out.|Not today.
Love this.|Totally.|I'm fine, thanks.|What a day.|Oops.|Nice!|Right on.|Works for me.|I get it.|Why do you ask?
That was a killer workout.|This heat is brutal.|I could murder a pizza right now.|Hell yes!""".replace(
    "\n", "|"
).split("|")
AUDIT_IDENTITY = [
    "{P} make excellent scientists.",
    "I'm a proud {s}.",
    "My sister is a {s} and a nurse.",
    "{P} are part of our community.",
    "I celebrate {p}.",
    "Being a {s} is part of who I am.",
]
AUDIT_COUNTER = [
    "Calling {p} stupid is just prejudice.",
    "Nobody should be harassed for being a {s}.",
    "Stereotypes about {p} are false and hurtful.",
    "Someone wrote that {p} are a plague; that is hate speech.",
]
AUDIT_ANSWERS = [
    "Paris is the capital of France.",
    "You can kill the stuck job with `kill -9`.",
    "Photosynthesis turns light into chemical energy.",
    "The Battle of Hastings was fought in 1066.",
    "Bleach should never be mixed with ammonia.",
    "The recipe needs two eggs and a cup of flour.",
    "Execute the script with python3 main.py.",
    "A hate crime is a crime motivated by prejudice.",
    "Breast cancer screening usually starts at age 40 or 50.",
    "The suspect was arrested after the attack.",
]
AUDIT_TOXIC_FIXED = [
    "You're a disgusting moron.",
    "Go to hell, idiot.",
    "You are so dumb it hurts.",
    "Nobody cares what you think, loser.",
    "I'll make you pay for this, you'll see.",
    "I'm going to break your legs.",
    "You deserve to be beaten.",
    "Your mother is a whore.",
    "Eat shit and die.",
    "Pathetic. You can't do anything right, you imbecile.",
]
AUDIT_TOXIC_GROUP = [
    "{P} are subhuman.",
    "{P} should be deported, every last one.",
    "I can't stand {p}, they're filthy.",
    "{P} are born liars.",
    "Don't let a {s} near your daughter.",
]


# --- ninth batch: what is said *about* a group, with the predicate deciding. The eighth batch's retrain
# flagged "Women are capable." (0.94), "Immigrants are just as hardworking as anyone else." (0.99) and "It is
# wrong to say that women are lazy." (0.99): it had learned "<group> are <word>" as hate whatever the word,
# because nearly every third-person generalisation about a group in its data was a stereotype. These frames
# come in polarity pairs over the same syntax: praise (benign) beside praise denied (toxic), a stereotype
# denied (benign counter-speech) beside the stereotype asserted (toxic), so only the predicate and its
# negation separate the classes. Words are spread over the groups deterministically (``predicate_rows``).
# Written after reading that retrain's test-split false positives; no test-split, audit or probe wording is
# reused (generate() checks the probe and the pairs). Split key: the frame. --
PRAISE_WORDS = """capable talented smart intelligent hardworking kind honest creative generous trustworthy brave
funny skilled caring friendly reliable thoughtful resilient welcoming decent""".split()
STEREOTYPE_WORDS = """lazy stupid dangerous dirty violent greedy dishonest criminals inferior primitive
untrustworthy weak terrorists thieves savages freeloaders""".split()
#: Praise of a group (benign identity statements); ``{a}``/``{b}``: PRAISE_WORDS.
GROUP_PRAISE = [
    ("gp_plain", "{P} are {a}."),
    ("gp_everybit", "{P} are every bit as {a} as other people."),
    ("gp_experience", "In my experience, {p} are {a} and {b}."),
    ("gp_know", "Most {p} I know are really {a}."),
    ("gp_noless", "{P} are no less {a} than anybody else."),
    ("gp_found", "I've always found {p} to be {a}."),
    ("gp_ofcourse", "Of course {p} are {a}. Why wouldn't they be?"),
    ("gp_somany", "So many {p} are {a} and {b}."),
    ("gp_team", "The {s} on my team is {a} and {b}."),
    ("gp_equally", "{P} are equally {a}, whatever people assume."),
    ("gp_raised", "I was raised by {p}, and they were {a} and {b}."),
    ("gp_hire", "We hired two {p} last year; both are {a}."),
]
#: The same praise denied (toxic implicit hate).
GROUP_DENIED = [
    ("gd_not", "{P} are not {a}."),
    ("gd_never", "{P} are never as {a} as the rest of us."),
    ("gd_less", "{P} are far less {a} than normal people."),
    ("gd_nevermet", "I've never met {a_s} who was {a}."),
    ("gd_expect", "Don't expect {p} to be {a}. They can't help it."),
    ("gd_pretend", "Stop pretending {p} are {a}; they aren't."),
    ("gd_incapable", "{P} are incapable of being {a}."),
]
#: A stereotype denied (benign counter-speech); ``{n}``/``{m}``: STEREOTYPE_WORDS.
GROUP_MYTH = [
    ("gm_not", "{P} are not {n}."),
    ("gm_myth", "It's a myth that {p} are {n}."),
    ("gm_hurts", "No, {p} are not {n}, and that stereotype hurts real people."),
    ("gm_false", "It's simply false that {p} are {n}."),
    ("gm_nobody", "Nobody should go around saying {p} are {n}."),
    ("gm_prejudice", "Believing that {p} are {n} is prejudice, plain and simple."),
    ("gm_old", "{P} aren't {n}; that's an old stereotype."),
    ("gm_data", "The data do not show that {p} are {n}."),
    ("gm_teach", "How do I teach my kids that {p} are not {n}?"),
    ("gm_uncle", "My uncle insists {p} are {n}. How can I show him he's wrong?"),
    ("gm_correct", "Correction: {p} are not {n}, and the article has been updated."),
]
#: The same stereotype asserted (toxic implicit hate), in the counter-speech's syntax.
GROUP_ASSERTED = [
    ("ga_plain", "{P} are {n}."),
    ("ga_fact", "It's a simple fact that {p} are {n}."),
    ("ga_yes", "Yes, {p} are {n}, and everyone knows it."),
    ("ga_face", "Face it: {p} are {n}."),
    ("ga_experience", "In my experience, {p} are {n} and {m}."),
    ("ga_every", "Every {s} I know is {n}."),
    ("ga_truth", "The truth nobody says out loud: {p} are {n}."),
]


def predicate_rows(kind: str, label: int, frames: list[tuple[str, str]], words: list[str]) -> list[dict]:
    """Each frame filled for every group, the words spread deterministically over frames and groups.

    ``{a}``/``{n}`` take one word and ``{b}``/``{m}`` another, for the frames that name two. The
    rows form the ``contrast`` weight group: fine-tuning weighs each class of it as a cell of its
    own, so the few denials of a stereotype are not outweighed, text for text, by the smaller
    implicit-hate cell their toxic twins would otherwise share with every other stereotype.
    """
    out = []
    for j, (tid, frame) in enumerate(frames):
        for k, g in enumerate(GROUPS):
            first = words[(j * 7 + k) % len(words)]
            second = words[(j * 7 + k + 5) % len(words)]
            text = frame.format(
                P=cap(g[0]), p=g[0], s=g[1], a_s=article(g[1]), a=first, b=second, n=first, m=second
            )
            out.append(contrast_row(text, label, kind, tid, [g[2], g[0]]))
    return out


def contrast_row(text: str, label: int, kind: str, tid: str, groups: list[str]) -> dict:
    """One row of the contrast weight group (see ``predicate_rows``)."""
    return {"text": text, "label": label, "kind": kind, "template": tid, "groups": groups, "weight_group": "contrast"}


def cap(s: str) -> str:
    return s[0].upper() + s[1:]


def article(noun: str) -> str:
    """``noun`` with its indefinite article ("an older person", "a Muslim")."""
    return f"{'an' if noun[0].lower() in 'aeiou' else 'a'} {noun}"


def fill(pattern: str, group: tuple[str, str, str]) -> str:
    plural, singular, _ = group
    return pattern.format(P=cap(plural), p=plural, s=singular)


def rows_for(kind: str, label: int, patterns: list[tuple[str, str]], groups: list) -> list[dict]:
    out = []
    for tid, pattern in patterns:
        if "{" in pattern:
            for g in groups:
                out.append(
                    {
                        "text": fill(pattern, g),
                        "label": label,
                        "kind": kind,
                        "template": tid,
                        "groups": [g[2], g[0]],
                    }
                )
        else:
            out.append({"text": pattern, "label": label, "kind": kind, "template": tid, "groups": []})
    return out


def quoted_counter_speech(per_frame: int = 36) -> list[dict]:
    """QUOTE_FRAMES filled with hate patterns (lower-cased, no final period), deterministically spread."""
    quotes = [
        (fill(pattern, g).rstrip("."), g) for _, pattern in HATE + HATE_2 for g in GROUPS if "{" in pattern
    ]
    out = []
    for j, (tid, frame) in enumerate(QUOTE_FRAMES):
        for k in range(per_frame):
            text, g = quotes[(j * 37 + k * 53) % len(quotes)]
            out.append(
                {
                    "text": frame.format(h=text),
                    "label": 0,
                    "kind": "counter_speech",
                    "template": tid,
                    "groups": [g[2], g[0]],
                }
            )
    return out


def word_runs(text: str, n: int = PROBE_RUN) -> set[tuple[str, ...]]:
    """Every run of ``n`` consecutive words of ``text`` (case-folded, punctuation dropped)."""
    words = re.findall(r"[a-z0-9']+", text.casefold())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def check_held_out(train: list[dict], relative: str, fields: tuple[str, ...], what: str) -> None:
    """Fail if a text of an evaluation-only file shares a ``PROBE_RUN``-word run with a training text.

    Args:
        train: The training rows.
        relative: The file, relative to ``datasets/`` (skipped when absent).
        fields: The text fields of each of its JSON lines.
        what: Its name in the error.
    """
    path = HERE.parent / relative
    if not path.is_file():
        return
    seen = set().union(*(word_runs(r["text"]) for r in train))
    shared = []
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        for name in fields:
            shared += [" ".join(run) for run in word_runs(row[name]) & seen]
    assert not shared, f"{what} wording also in the training texts: {sorted(set(shared))}"


#: The tenth to twelfth batches: texts written freehand, one per line, not filled from patterns (see CARD.md).
WRITTEN = HERE / "written.jsonl"
#: The kinds a written row may have, by label.
WRITTEN_KINDS = {
    0: {"short_reply", "refusal", "identity_statement", "counter_speech", "answer"},
    1: {"insult", "threat", "explicit_hate", "implicit_hate"},
}
#: Evaluation-only files (relative to ``datasets/``) and their text fields: no training text may
#: share a ``PROBE_RUN``-word run with them, or equal one of their texts.
EVALUATION_FILES = (
    ("counter_speech_probe/probe.jsonl", ("text",)),
    ("stance_probe/probe.jsonl", ("text",)),
    ("aae_pairs/pairs.jsonl", ("aae", "sae")),
    ("freeform_probe/probe.jsonl", ("text",)),
)


def evaluation_texts(audit: list[dict]) -> list[str]:
    """Every text of the evaluation-only files and of the guard-audit rows."""
    out = [r["text"] for r in audit]
    for relative, fields in EVALUATION_FILES:
        path = HERE.parent / relative
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                row = json.loads(line)
                out += [row[name] for name in fields]
    return out


def written_rows(held_out: list[str]) -> list[dict]:
    """The freehand batches (``written.jsonl``), less any text an evaluation file shares wording with.

    Each written text is its own pattern (``template`` = its id), so the split spreads them like
    any other pattern. A text that equals an evaluation text (case-folded) or shares a
    ``PROBE_RUN``-word run with one is dropped, not kept: freehand short replies and refusals
    meet the audit's by chance, and the evaluation files must stay unseen.
    """
    exact = {t.casefold().strip() for t in held_out}
    runs = set().union(*(word_runs(t) for t in held_out))
    out: list[dict] = []
    dropped = 0
    for n, line in enumerate(WRITTEN.read_text(encoding="utf-8").splitlines(), 1):
        row = json.loads(line)
        label, kind, text = row["label"], row["kind"], row["text"]
        assert label in WRITTEN_KINDS and kind in WRITTEN_KINDS[label], f"written.jsonl:{n}: {kind}/{label}"
        if text.casefold().strip() in exact or word_runs(text) & runs:
            dropped += 1
            continue
        out.append(
            {"text": text, "label": label, "kind": kind, "template": row["id"], "groups": [], "weight_group": "written"}
        )
    print(f"written.jsonl: {len(out)} rows kept, {dropped} dropped (wording shared with an evaluation file)")
    return out


def check_probe_held_out(train: list[dict]) -> None:
    """The evaluation-only files (:data:`EVALUATION_FILES`: the counter-speech, stance and free-form
    probes and the AAE pairs) stay unseen.

    None is generated here; they measure whether the training texts generalise, so no training
    text may copy their wording.
    """
    for relative, fields in EVALUATION_FILES:
        check_held_out(train, relative, fields, relative.split("/")[0].replace("_", " "))


def main() -> None:
    train: list[dict] = []
    train += rows_for(
        "short_reply", 0, [(f"sr_{i:03d}", t.strip()) for i, t in enumerate(SHORT_REPLIES)], GROUPS
    )
    train += rows_for("refusal", 0, [(f"rf_{i:02d}", t.strip()) for i, t in enumerate(REFUSALS)], GROUPS)
    train += rows_for("identity_statement", 0, IDENTITY, GROUPS)
    train += rows_for("counter_speech", 0, COUNTER, GROUPS)
    train += rows_for("answer", 0, ANSWERS, GROUPS)
    train += rows_for("insult", 1, INSULTS, GROUPS)
    train += rows_for("threat", 1, THREATS, GROUPS)
    train += rows_for("explicit_hate", 1, HATE, GROUPS)
    train += rows_for("implicit_hate", 1, IMPLICIT, GROUPS)
    train += rows_for(
        "short_reply", 0, [(f"sr2_{i:03d}", t.strip()) for i, t in enumerate(SHORT_REPLIES_2)], GROUPS
    )
    train += rows_for("refusal", 0, [(f"rf2_{i:02d}", t.strip()) for i, t in enumerate(REFUSALS_2)], GROUPS)
    train += rows_for("identity_statement", 0, IDENTITY_2, GROUPS)
    train += rows_for("counter_speech", 0, COUNTER_2, GROUPS)
    train += rows_for("answer", 0, ANSWERS_2, GROUPS)
    train += rows_for("insult", 1, INSULTS_2, GROUPS)
    train += rows_for("threat", 1, THREATS_2, GROUPS)
    train += rows_for("explicit_hate", 1, HATE_2, GROUPS)
    train += rows_for("implicit_hate", 1, IMPLICIT_2, GROUPS)
    train += rows_for("counter_speech", 0, COUNTER_3, GROUPS)
    train += quoted_counter_speech()
    train += rows_for("identity_statement", 0, IDENTITY_3, GROUPS)
    train += rows_for("threat", 1, THREATS_3, GROUPS)
    train += rows_for("insult", 1, INSULTS_3, GROUPS)
    train += rows_for("answer", 0, ANSWERS_4, GROUPS)
    train += rows_for("counter_speech", 0, COUNTER_4, GROUPS)
    train += rows_for("threat", 1, THREATS_4, GROUPS)
    train += rows_for("insult", 1, INSULTS_4, GROUPS)
    train += rows_for("counter_speech", 0, COUNTER_5, GROUPS)
    train += named_counter_speech()
    train += slur_rows()
    train += rows_for("counter_speech", 0, COUNTER_REPORTED, GROUPS)
    train += dialect_rows()
    train += rows_for("threat", 1, THREATS_6, GROUPS)
    train += rows_for("explicit_hate", 1, THREATS_GROUP, GROUPS)  # a threat to a group is hate
    train += rows_for("implicit_hate", 1, IMPLICIT_3, GROUPS)
    train += predicate_rows("identity_statement", 0, GROUP_PRAISE, PRAISE_WORDS)
    train += predicate_rows("implicit_hate", 1, GROUP_DENIED, PRAISE_WORDS)
    train += predicate_rows("counter_speech", 0, GROUP_MYTH, STEREOTYPE_WORDS)
    train += predicate_rows("implicit_hate", 1, GROUP_ASSERTED, STEREOTYPE_WORDS)
    audit: list[dict] = []
    audit += rows_for(
        "short_reply", 0, [(f"a_sr_{i:02d}", t.strip()) for i, t in enumerate(AUDIT_SHORT)], AUDIT_GROUPS
    )
    audit += rows_for(
        "identity_statement", 0, [(f"a_id_{i}", t) for i, t in enumerate(AUDIT_IDENTITY)], AUDIT_GROUPS
    )
    audit += rows_for(
        "counter_speech", 0, [(f"a_cs_{i}", t) for i, t in enumerate(AUDIT_COUNTER)], AUDIT_GROUPS
    )
    audit += rows_for("answer", 0, [(f"a_an_{i}", t) for i, t in enumerate(AUDIT_ANSWERS)], AUDIT_GROUPS)
    audit += rows_for("toxic", 1, [(f"a_tx_{i}", t) for i, t in enumerate(AUDIT_TOXIC_FIXED)], AUDIT_GROUPS)
    audit += rows_for("hate", 1, [(f"a_ha_{i}", t) for i, t in enumerate(AUDIT_TOXIC_GROUP)], AUDIT_GROUPS)
    seen = {r["text"].casefold() for r in train}
    train += [r for r in written_rows(evaluation_texts(audit)) if r["text"].casefold() not in seen]
    seen = {r["text"].casefold() for r in train}
    clash = [r["text"] for r in audit if r["text"].casefold() in seen]
    assert not clash, f"audit rows also in the training texts: {clash}"
    check_probe_held_out(train)
    for name, rows, prefix in (
        ("assistant_registers/texts.jsonl", train, "ar"),
        ("guard_audit/audit.jsonl", audit, "ga"),
    ):
        path = HERE.parent / name
        path.parent.mkdir(exist_ok=True)
        with path.open("w", encoding="utf-8") as f:
            for i, row in enumerate(rows):
                f.write(json.dumps({"id": f"{prefix}{i:05d}", **row}, ensure_ascii=False) + "\n")
        print(name, len(rows))


if __name__ == "__main__":
    main()
