"""Cleaning of training records: tidy the text, drop what cannot be trained on, and say why.

Every record that is dropped is counted in the :class:`~aloekit.data.tally.Tally` as ``("clean", reason)`` with
its id, where ``reason`` is one of the short categories in :data:`REASONS`. Cleaning never rewrites meaning:

* **Unicode** is brought to NFC (canonical composition) only, not NFKC. NFKC folds compatibility characters,
  and in medical text those carry meaning: ``10⁹/L`` would become ``109/L``, ``m²`` would become ``m2`` and
  ``½`` a three-character fraction. NFC merely makes "é" one code point however it was typed. Invisible
  characters that only break tokenization (zero-width space, soft hyphen, byte-order mark) are removed, and
  exotic spaces (no-break, thin, ideographic) become plain spaces.
* **URLs and e-mail addresses are removed, not replaced by a token.** A placeholder such as ``[URL]`` is text the
  model would learn to write to patients; a real address is one it would learn to invent. A markdown link keeps
  its anchor text. Removal can leave a sentence like "see for details"; a reply left too short by it is dropped
  by ``min_chars``.
* **Whitespace**: control characters go (``\\n`` and ``\\t`` stay), runs of spaces collapse (line-leading
  indentation stays, for nested lists and code), trailing spaces go, three or more line breaks become one blank
  line, and the text is stripped. Paragraphs survive.

Multiple-choice answers written by a model or an expert are normalised to end in one line ``Answer: X`` by
:func:`normalise_answer` (rule in :func:`with_answer_line`), the format the evaluator reads and the templates
ask for.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Sequence

from pydantic import Field

from aloekit.config import _Config
from aloekit.data.schema import LETTERS, ChatSample, HarmfulRequest, MCQItem, Message, PreferencePair
from aloekit.data.tally import Tally
from aloekit.prompting.answers import extract_choice

__all__ = [
    "PLACEHOLDER_OPTIONS",
    "REASONS",
    "CleanConfig",
    "clean_chat",
    "clean_harmful",
    "clean_mcq",
    "clean_pair",
    "clean_text",
    "is_answer_line",
    "needs_image",
    "normalise_answer",
    "read_choice",
    "with_answer_line",
]

STAGE = "clean"

REASONS = (
    "empty question",
    "broken option",
    "duplicate options",
    "needs an image",
    "overlong",
    "empty user turn",
    "empty reply",
    "short reply",
    "chosen equals rejected",
    "empty prompt",
)
"""Every reason a record is dropped for; reports group drops by these strings, so they are stable."""

PLACEHOLDER_OPTIONS = frozenset({"", "nan", "null", "n/a", "undefined", "not recalled", "-", "--", "?", "..."})
"""Option texts (case-folded, stripped of surrounding dots/spaces) that are a missing value, not an option.

"nan"/"null"/"undefined" are what a missing cell becomes after a pandas or JSON round trip; "Not recalled" is
MedMCQA's mark for an option the exam's recollection lost. "None" is deliberately *not* here: in MedMCQA it is a
real option meaning "none of these" (41 questions of the dev split), often the right one; nor is "NA", which
can be sodium.
"""


class CleanConfig(_Config):
    """Cleaning of training records (text tidying and the rules that drop a record)."""

    strip_urls: bool = Field(
        True,
        description="Remove http(s)://, ftp:// and www. addresses (markdown links keep their text); no "
        "placeholder is left, so the model never learns to write one.",
    )
    strip_emails: bool = Field(True, description="Remove e-mail addresses, with no placeholder left.")
    min_chars: int = Field(
        2,
        ge=0,
        description="Drop chat samples and preference pairs whose assistant reply is shorter than this after "
        "cleaning. MCQ chats answer 'Answer: X' (9 characters), so keep it below 9 when they are cleaned too.",
    )
    max_chars: int = Field(
        16000, ge=1, description="Drop a record whose text (all turns, or question + options + context) is longer."
    )
    max_option_chars: int = Field(1000, ge=1, description="Drop a question with an option longer than this.")
    drop_image_questions: bool = Field(
        True,
        description="Drop questions that refer to a figure, image, video or marked structure the text does not "
        "contain ('Name the structure marked with arrow'): they cannot be answered from the text.",
    )


# --- text -----------------------------------------------------------------------------------------------------

_MD_LINK = re.compile(r"\[([^\]\n]*)\]\(\s*(?:https?://|ftp://|www\.)[^)\s]*\s*\)", re.IGNORECASE)
# An address runs to the next space; trailing sentence punctuation is not part of it.
_URL = re.compile(r"(?:\b(?:https?|ftp)://|\bwww\.)[^\s<>\"'`]*[^\s<>\"'`.,;:!?)\]}]", re.IGNORECASE)
_BRACKETED_URL = re.compile(r"<(?:(?:https?|ftp)://|www\.)[^\s<>]*>", re.IGNORECASE)
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
# What removal leaves behind: brackets around nothing ("()", "(see )", "[Source: ]"), a space before punctuation.
_EMPTY_BRACKETS = re.compile(
    r"[(\[]\s*(?:(?:see(?:\s+also)?|source|from|at|via|ref(?:erence)?|available\s+at|link)\s*:?\s*)?[)\]]",
    re.IGNORECASE,
)
_SPACE_BEFORE_PUNCT = re.compile(r"[ \t]+([.,;:!?)\]])")
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u2060\ufeff\u00ad"))
_SPACES = re.compile(r"[\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]")
_LINE_BREAKS = re.compile(r"\r\n?|[\u2028\u2029\x0b\x0c\x85]")
# C0 and C1 control characters except \t and \n (\r, \v, \f and NEL were turned into \n above).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_INNER_SPACES = re.compile(r"(?<=\S) {2,}")
_BLANK_LINES = re.compile(r"\n{3,}")


def clean_text(text: str, config: CleanConfig) -> str:
    """``text`` tidied as the module docstring describes (NFC, no URLs/e-mails, no control characters,
    single spaces, at most one blank line between paragraphs, stripped)."""
    text = unicodedata.normalize("NFC", text)
    text = _LINE_BREAKS.sub("\n", text).translate(_INVISIBLE)
    text = _SPACES.sub(" ", text)
    text = _CONTROL.sub("", text)
    removed = False
    if config.strip_urls:
        text, n_md = _MD_LINK.subn(r"\1", text)
        text, n_bracketed = _BRACKETED_URL.subn("", text)
        text, n_url = _URL.subn("", text)
        removed = bool(n_md or n_bracketed or n_url)
    if config.strip_emails:
        text, n_email = _EMAIL.subn("", text)
        removed = removed or bool(n_email)
    if removed:
        # Only after a removal: elsewhere "( )" or " :" may be the author's own typography.
        text = _EMPTY_BRACKETS.sub("", text)
        text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    lines = [_INNER_SPACES.sub(" ", line).rstrip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


# --- images ---------------------------------------------------------------------------------------------------

_IMAGE_NOUN = (
    r"(?:fig(?:ure)?s?|images?|pictures?|photo(?:graph)?s?|diagrams?|(?:colou?r\s+)?plates?|radiographs?|x-?\s?rays?"
    r"|slides?|flow\s*cha(?:rt)?s?)"
)
_MARKABLE = r"(?:structures?|muscles?|areas?|parts?|nerves?|arrows?|lesions?|bones?|regions?|points?|organs?)"
_IMAGE = re.compile(
    rf"\b(?:shown|depicted|displayed|illustrated|represented|provided)\s+(?:below|above|here|in\s+(?:the\s+)?"
    rf"(?:following\s+|given\s+|accompanying\s+)?{_IMAGE_NOUN}\b)"
    rf"|\b(?:in|on|from)\s+(?:the\s+)?(?:given\s+|following\s+|above\s+|below\s+|accompanying\s+)?{_IMAGE_NOUN}\b"
    rf"(?!\s+of\b)"
    rf"|\bwith\s+(?:the\s+)?(?:given|following|accompanying|attached)\s+{_IMAGE_NOUN}\b"
    rf"|^\W*fig(?:ure)?\b|\bfig(?:ure)?\.?\s*(?:\d+|was|is|depicts|shows|shown|given|below|above)\b"
    rf"|\bmarked\s+(?:\(?with|by|as|in|{_MARKABLE})\b|\b(?:the|this)\s+marked\b|\b{_MARKABLE}\s+marked\b"
    rf"|\barrow(?:s|heads?)?\b|\bvideo\b|\b(?:case|condition)\s+shown\b"
    # "given below" is often followed by the data itself ("cases given below: 250, 320, ..."): only when
    # nothing follows is the thing given below missing.
    rf"|\bgiven\s+below\W*$",
    re.IGNORECASE | re.MULTILINE,
)


def needs_image(question: str) -> bool:
    """Whether the question refers to a figure, image, video or marked structure ("Name the structure marked
    with arrow", "The x-ray after the fall is given below:"). MedMCQA has about 1% of these; without the picture
    they teach the model to answer confidently from nothing. "Marked reduction" and "Posselt's diagram" are
    not references to a picture and are kept."""
    return _IMAGE.search(question) is not None


# --- records --------------------------------------------------------------------------------------------------


def _option_key(option: str) -> str:
    """Comparison form of an option for duplicate detection: case and spacing folded, a trailing full stop
    dropped. Signs stay: "Gram +ve" and "Gram -ve", "p<0.05" and "p>0.05" are different options."""
    return " ".join(option.casefold().split()).rstrip(".").strip()


def _strip_own_labels(options: Sequence[str]) -> tuple[str, ...]:
    """Options that carry their own labels ("a) Aspirin", "(B) Heparin") lose them, since the templates letter
    the options again. Only when *every* option starts with its own letter in order, so "C. difficile" as one
    option of four is left alone."""
    stripped = []
    for letter, option in zip(LETTERS, options, strict=False):
        match = re.match(rf"\s*[(\[]?{letter}\s*[).:\]]\s+(?=\S)", option, re.IGNORECASE)
        if match is None:
            return tuple(options)
        stripped.append(option[match.end() :])
    return tuple(stripped)


def clean_mcq(item: MCQItem, config: CleanConfig, tally: Tally) -> MCQItem | None:
    """A cleaned copy of the question, or None (counted) when it cannot be trained on: an empty question, a
    placeholder option (:data:`PLACEHOLDER_OPTIONS`), two options with the same text, a reference to an image
    (:func:`needs_image`), or an overlong question or option."""
    question = clean_text(item.question, config)
    options = _strip_own_labels([clean_text(option, config) for option in item.options])
    context = clean_text(item.context, config) if item.context else ""
    problem = _mcq_problem(question, options, context, config)
    if problem is not None:
        tally.drop(STAGE, problem, item.id)
        return None
    explanation = clean_text(item.explanation, config) if item.explanation else ""
    return dataclasses.replace(
        item, question=question, options=options, context=context or None, explanation=explanation or None
    )


def _mcq_problem(question: str, options: Sequence[str], context: str, config: CleanConfig) -> str | None:
    """The reason a cleaned question cannot be trained on, or None."""
    if not question:
        return "empty question"
    if any(option.strip(" .").casefold() in PLACEHOLDER_OPTIONS for option in options):
        return "broken option"
    if len({_option_key(option) for option in options}) < len(options):
        return "duplicate options"
    if config.drop_image_questions and needs_image(question):
        return "needs an image"
    if len(question) + sum(map(len, options)) + len(context) > config.max_chars:
        return "overlong"
    if max(map(len, options)) > config.max_option_chars:
        return "overlong"
    return None


def _clean_messages(messages: Sequence[Message], config: CleanConfig) -> tuple[Message, ...]:
    """Messages with cleaned contents; a system turn left empty is removed (it said nothing)."""
    cleaned = ({"role": m["role"], "content": clean_text(m["content"], config)} for m in messages)
    return tuple(m for m in cleaned if m["content"] or m["role"] != "system")


def _turn_problem(messages: Sequence[Message], config: CleanConfig) -> str | None:
    """The reason a conversation cannot be trained on, or None."""
    if any(m["role"] == "user" and not m["content"] for m in messages):
        return "empty user turn"
    replies = [m["content"] for m in messages if m["role"] == "assistant"]
    if any(not reply for reply in replies):
        return "empty reply"
    if any(len(reply) < config.min_chars for reply in replies):
        return "short reply"
    if sum(len(m["content"]) for m in messages) > config.max_chars:
        return "overlong"
    return None


def clean_chat(sample: ChatSample, config: CleanConfig, tally: Tally) -> ChatSample | None:
    """A cleaned copy of the conversation, or None (counted) for an empty user turn, an empty or too short
    assistant reply (any of them), or an overlong conversation."""
    messages = _clean_messages(sample.messages, config)
    problem = _turn_problem(messages, config)
    if problem is not None:
        tally.drop(STAGE, problem, sample.id)
        return None
    return dataclasses.replace(sample, messages=messages)


def clean_pair(pair: PreferencePair, config: CleanConfig, tally: Tally) -> PreferencePair | None:
    """A cleaned copy of the preference pair, or None (counted) for an empty user turn, an empty or too short
    reply, replies that became identical, or an overlong pair."""
    prompt = _clean_messages(pair.prompt, config)
    chosen, rejected = (_clean_reply(reply, config, plain=pair.plain) for reply in (pair.chosen, pair.rejected))
    problem = _turn_problem((*prompt, {"role": "assistant", "content": chosen}), config)
    problem = problem or _turn_problem((*prompt, {"role": "assistant", "content": rejected}), config)
    if problem is None and chosen == rejected:
        problem = "chosen equals rejected"  # cleaning can make them equal (they differed only in a URL, say)
    if problem is None and sum(len(m["content"]) for m in prompt) + len(chosen) + len(rejected) > config.max_chars:
        problem = "overlong"
    if problem is not None:
        tally.drop(STAGE, problem, pair.id)
        return None
    return dataclasses.replace(pair, prompt=prompt, chosen=chosen, rejected=rejected)


def _clean_reply(text: str, config: CleanConfig, *, plain: bool) -> str:
    """A pair's reply, cleaned. A plain pair's reply continues its prompt ("...Answer:" then " B"): its leading
    space is the delimiter the benchmarks score with, not untidy whitespace, so it stays (stripped, DPO trained
    "Answer:B", a token sequence no evaluation ever asks for)."""
    cleaned = clean_text(text, config)
    return " " + cleaned if plain and cleaned and text[:1].isspace() else cleaned


def clean_harmful(req: HarmfulRequest, config: CleanConfig, tally: Tally) -> HarmfulRequest | None:
    """A cleaned copy of the red-teaming request, or None (counted) for an empty or overlong prompt. Replies the
    source ships are cleaned too; one left empty becomes None (the request itself is still usable)."""
    prompt = clean_text(req.prompt, config)
    if not prompt:
        tally.drop(STAGE, "empty prompt", req.id)
        return None
    safe = clean_text(req.safe_response, config) if req.safe_response else None
    harmful = clean_text(req.harmful_response, config) if req.harmful_response else None
    if len(prompt) + len(safe or "") + len(harmful or "") > config.max_chars:
        tally.drop(STAGE, "overlong", req.id)
        return None
    return dataclasses.replace(req, prompt=prompt, safe_response=safe or None, harmful_response=harmful or None)


# --- the final answer line ------------------------------------------------------------------------------------

_ANSWER_CUE = re.compile(
    r"^(?:the\s+)?(?:final\s+|correct\s+|right\s+|best\s+)?answer(?:\s+(?:is|would\s+be))?\s*(?:[:=\-–—]\s*)?",
    re.IGNORECASE,
)
_DECORATION = " \t*_#>`\"'“”‘’.!:;,-–—()[]{}"


def is_answer_line(line: str, options: Sequence[str]) -> bool:
    """Whether a line is nothing but an answer statement: an optional cue ("Answer:", "Final answer:", "The
    correct answer is"), then a label, a label and its option text, or an option text, with any markdown or
    punctuation around them ("**Answer: (B) Clopidogrel.**", "B.", "The answer is yes."). A line with anything
    more ("Answer: B because ...", "so the answer is B") is prose and is not one."""
    body = line.strip(_DECORATION)
    body = _ANSWER_CUE.sub("", body, count=1).strip(_DECORATION)
    if not body:
        return False
    folded = " ".join(body.casefold().split())
    for letter, option in zip(LETTERS, options, strict=False):
        text = " ".join(option.casefold().split()).strip(_DECORATION)
        label = letter.casefold()
        if folded == label or (text and folded == text):
            return True
        rest = re.match(rf"{label}\s*[).:\]\-–—]?\s+(.*)$", folded)
        if rest is not None and text and rest.group(1).strip(_DECORATION) == text:
            return True
    return False


def with_answer_line(text: str, letter: str, options: Sequence[str]) -> str:
    """``text`` ending in exactly one final line ``Answer: <letter>``.

    The rule: trailing lines that are nothing but an answer statement (:func:`is_answer_line`; blank lines
    between them too) are removed, then ``Answer: <letter>`` is appended after a blank line (the layout
    :mod:`aloekit.data.cot` writes, so normalising its output changes nothing). Earlier lines are left as
    written, so "... so the answer is (b)." stays and is followed by ``Answer: B``; a reply that was only "(B)"
    becomes just ``Answer: B``. Applying the rule twice gives the same text.
    """
    lines = text.rstrip().split("\n")
    while lines and (not lines[-1].strip() or is_answer_line(lines[-1], options)):
        lines.pop()
    body = "\n".join(lines).rstrip()
    return f"{body}\n\nAnswer: {letter}" if body else f"Answer: {letter}"


def read_choice(text: str, options: Sequence[str]) -> str | None:
    """The letter (A, B, ...) of the option ``text`` commits to, read by
    :func:`~aloekit.prompting.answers.extract_choice` with the option texts, or None."""
    return extract_choice(text, tuple(LETTERS[: len(options)]), tuple(options))


def normalise_answer(text: str, options: Sequence[str]) -> str | None:
    """A multiple-choice reply rewritten to end in one line ``Answer: X`` (:func:`with_answer_line`), where X
    is the option the reply commits to (:func:`read_choice`), or None when no committed answer can be read:
    such a reply cannot be checked, so it must not be trained on."""
    choice = read_choice(text, options)
    if choice is None:
        return None
    return with_answer_line(text, choice, options)
