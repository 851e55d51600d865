"""Benign look-alike requests: safe questions worded like unsafe ones, to keep a safety-trained model helpful.

A model taught to refuse short harmful requests ("How do I <violent verb> ...?") learns the surface first and
refuses "How do I kill a Python process?" too. Training on such look-alikes with helpful answers (SFT, or DPO with
the helpful answer chosen over a refusal) teaches the difference. Every prompt here is composed from word lists
written for aloekit, following the kinds of over-refusal named in the literature (homonyms, figurative
language, safe targets, safe contexts, definitions, historical events, public facts about fictional and public
figures) plus medical look-alikes (pain, poisons, overdoses asked about for safety). None is taken from an
evaluation set; the mixture's decontamination checks them against every one like any other source.

Prompts only: a helpful answer is written by the recipe's responder model (``responder`` in the mixture or the
preference config), and kept only if it is not a refusal.
"""

from __future__ import annotations

import hashlib
import itertools

from aloekit.data.sources.safety import BenignItem

# (verb phrase, object) pairs where the alarming verb has a harmless meaning.
_HOMONYMS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "kill",
        (
            "a frozen Python process",
            "a background job in Linux",
            "the engine of my lawnmower",
            "the lights in the garage from my phone",
            "a stuck app on my laptop",
            "the noise from my fridge",
        ),
    ),
    (
        "terminate",
        (
            "an EC2 instance I no longer need",
            "a running Docker container",
            "my phone contract early",
            "a lease on an apartment",
        ),
    ),
    (
        "shoot",
        (
            "a portrait in low light",
            "a short film on a phone",
            "a free throw in basketball",
            "an email to my manager",
            "the moon with a DSLR",
        ),
    ),
    ("execute", ("a SQL query from Python", "a shell script on startup", "a business plan", "a perfect pirouette")),
    (
        "attack",
        (
            "a hard crossword puzzle",
            "the pile of dishes in my sink",
            "a steep hill on my bike",
            "a difficult chess position",
        ),
    ),
    (
        "destroy",
        (
            "old hard drives before recycling them",
            "confidential paper documents at home",
            "the weeds in my lawn",
            "my personal best in the 5K",
        ),
    ),
    ("blow up", ("a photo to poster size", "balloons for a party without a pump", "an air mattress")),
    ("crush", ("garlic without a press", "ice for cocktails", "cans for recycling", "my next job interview")),
    ("smash", ("a volleyball serve", "my reading goal this year", "avocado for guacamole")),
    ("strangle", ("the growth of bindweed in my garden",)),
    ("choke", ("a carburetor on a cold morning", "the flow of a garden hose")),
    ("butcher", ("a whole chicken into eight pieces", "a side of pork for the freezer")),
    ("hijack", ("the attention of a bored audience at the start of a talk",)),
    ("poison", ("the rats in my barn safely around pets", "a Wi-Fi network in a network security class exercise")),
    ("slaughter", ("the competition in a school spelling bee",)),
    ("eliminate", ("duplicate rows in Excel", "clutter in my closet", "background noise in a recording")),
    ("hack", ("my morning routine to save time", "together a quick birdhouse from scrap wood")),
    ("murder", ("a karaoke song in the best possible way",)),
    ("steal", ("a base in baseball", "the show at a talent contest")),
    ("bomb", ("a joke at stand-up night without losing the room",)),
)

_FRAMES = (
    "How do I {verb} {obj}?",
    "What's the best way to {verb} {obj}?",
    "How can I {verb} {obj}?",
    "Can you explain how to {verb} {obj}?",
)

# Safe targets and safe contexts, asked whole.
_SAFE_QUESTIONS: tuple[str, ...] = (
    "How do I kill mold growing on my bathroom ceiling?",
    "What kills fruit flies in a kitchen?",
    "How do I get rid of head lice in my child's hair?",
    "What is the best way to kill bacteria on a wooden cutting board?",
    "How do I kill termites in a wooden deck?",
    "How can I get rid of a wasp nest under my roof?",
    "How do I remove a computer virus from my laptop?",
    "How do I kill the final boss in a platform video game?",
    "What's the best strategy to take out enemy bases in a real-time strategy game?",
    "How do I set up an ambush in a paintball match?",
    "How do I choke out an opponent in a Brazilian jiu-jitsu match, following the rules?",
    "How do I knock out my sparring partner in a boxing match, within the rules?",
    "How do I write a convincing murder mystery plot for my novel?",
    "How did the detective in a classic whodunit usually reveal the killer?",
    "How do I shoot a three-point shot more consistently?",
    "How do I make a villain in my fantasy story more threatening?",
    "What's a good way to get away with eating the last slice of pizza at home?",
    "How do I break into the film industry as a screenwriter?",
    "How do I break into a new career in nursing?",
    "How can I steal some time for myself as a busy parent?",
    "What is the best way to blow off steam after a stressful shift?",
    "How do I kill time during a long layover?",
    "How do I beat my procrastination habit?",
    "How can I tear down an old garden shed safely?",
    "How do I burn a CD of my own music?",
    "How do I cut the cord with cable TV?",
)

# Definitions and history: knowledge about harm, not instructions for it.
_DEFINITIONS: tuple[str, ...] = (
    "arson",
    "money laundering",
    "insider trading",
    "a Ponzi scheme",
    "identity theft",
    "embezzlement",
    "human trafficking",
    "cyberbullying",
    "extortion",
    "a war crime",
    "genocide",
    "terrorism",
    "a coup d'etat",
    "a phishing attack",
    "ransomware",
    "a hate crime",
    "manslaughter",
    "stalking",
    "blackmail",
    "bribery",
)
_DEFINITION_FRAMES = ("What is {x}?", "What does {x} mean?", "Can you define {x}?")

_HISTORY: tuple[str, ...] = (
    "Why did the Chernobyl nuclear disaster happen?",
    "What caused the Great Famine in Ireland?",
    "How did the Titanic sink so quickly?",
    "Why did the Roman Empire fall?",
    "What led to the bombing of Hiroshima in 1945?",
    "How did the Black Death spread through Europe?",
    "Why was the Berlin Wall built, and why did it fall?",
    "What happened during the Salem witch trials?",
    "How did the 1918 influenza pandemic kill so many people?",
    "Why did the Thalidomide tragedy happen, and what did medicine learn from it?",
    "What was the Tuskegee syphilis study and why was it unethical?",
    "How did John Snow stop the 1854 cholera outbreak in London?",
)

# Public facts about public institutions and fictional people.
_PUBLIC: tuple[str, ...] = (
    "Where is the official residence of the Prime Minister of the United Kingdom?",
    "What is the address of the White House?",
    "Where does Harry Potter live with the Dursleys?",
    "What is Sherlock Holmes's address in the stories?",
    "Where did the fictional detective Hercule Poirot live in London?",
    "What hospital does the TV show Grey's Anatomy take place in?",
)

# Medical questions that mention pain, poisons, overdoses or weapons for care and safety, not harm.
_MEDICAL: tuple[str, ...] = (
    "How do I kill the pain of a toothache until I can see a dentist?",
    "What are the warning signs of an opioid overdose, and what should I do?",
    "How much acetaminophen is too much in one day?",
    "What should I do if my toddler swallowed a button battery?",
    "Which household cleaners are dangerous to mix, and why?",
    "How do I treat a snake bite while waiting for help?",
    "What should I do if someone is choking?",
    "How do I stop a nosebleed that won't stop?",
    "How do I get rid of a wart on my finger?",
    "What are the signs of carbon monoxide poisoning?",
    "How do I safely dispose of expired prescription drugs?",
    "How do I help a friend who says they are thinking about suicide?",
    "What is the lethal mechanism of a heart attack, and how can I lower my risk?",
    "How do antibiotics kill bacteria?",
    "How does chemotherapy kill cancer cells?",
    "How do I kill germs on a thermometer between uses?",
    "What should I do after a gunshot wound until paramedics arrive?",
    "How do I recognise alcohol poisoning at a party?",
    "Why is it dangerous to take sleeping pills with alcohol?",
    "How do I safely store a firearm in a home with children?",
    "What happens to the body during a drug overdose?",
    "How can I stop the bleeding from a deep cut in the kitchen?",
    "How do I starve a fever, or is that a myth?",
    "How do I get rid of a migraine fast?",
)


def lookalike_prompts() -> list[tuple[str, str, str]]:
    """Every benign look-alike prompt as ``(id, kind, prompt)``, in a fixed order; ids are a hash of the text,
    so a prompt keeps its id (and its place in a ``part`` of the source) when the lists grow."""
    out: list[tuple[str, str]] = []
    for (verb, objects), frame in itertools.product(_HOMONYMS, _FRAMES):
        out += [("homonym", frame.format(verb=verb, obj=obj)) for obj in objects]
    out += [("safe_target_or_context", q) for q in _SAFE_QUESTIONS]
    out += [("definition", f.format(x=x)) for x in _DEFINITIONS for f in _DEFINITION_FRAMES]
    out += [("history", q) for q in _HISTORY]
    out += [("public_or_fictional", q) for q in _PUBLIC]
    out += [("medical", q) for q in _MEDICAL]
    return [(f"lookalike-{hashlib.blake2b(p.encode(), digest_size=6).hexdigest()}", kind, p) for kind, p in out]


def lookalike_items(source: str = "lookalike") -> list[BenignItem]:
    """The prompts as benign items without answers (a responder writes them)."""
    return [BenignItem(id=i, prompt=p, answer=None, source=source) for i, _, p in lookalike_prompts()]
