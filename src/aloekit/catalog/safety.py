"""Safety, over-refusal, truthfulness and bias datasets: red-team suites, the prompt sets decontamination
checks, and the harmful requests that training turns into refusals."""

from __future__ import annotations

from aloekit.catalog.model import Dataset, HubRef, Source, Split, SuiteUse, Texts

TRUTHFULQA_MC = "truthfulqa/mc_task.json"
TRUTHFULQA_HUB = HubRef("truthfulqa/truthful_qa", "multiple_choice", "validation")
BBQ_FILES = "bbq/*.jsonl"

SAFETY = (
    Dataset(
        "xstest",
        "benign",
        "XSTest over-refusal prompts and human-labelled model completions.",
        {
            "prompts": Split(
                "eval",
                ("xstest/xstest_prompts.csv",),
                HubRef("walledai/XSTest", None, "test"),
                suite=SuiteUse(
                    "xstest",
                    "prompt",
                    "type",
                    hub_category="type",
                    kind="xstest",
                    note="XSTest v2: 250 safe prompts and 200 unsafe contrasts",
                ),
                texts=Texts((("prompt",),), id_field="id"),
            ),
            # Ground truth for validating a refusal judge; its prompts are the ones above.
            "completions": Split("eval", ("xstest/completions/*.csv",)),
        },
    ),
    Dataset(
        "harmbench",
        "harmful",
        "HarmBench harmful behaviours (test and validation).",
        {
            # The test split is the one red-teaming evaluates, so it is the one decontamination checks.
            "test": Split(
                "eval",
                ("harmbench/harmbench_behaviors_text_test.csv",),
                HubRef("walledai/HarmBench", "standard", "train"),
                suite=SuiteUse(
                    "harmbench",
                    "Behavior",
                    "SemanticCategory",
                    context="ContextString",
                    hub_category="category",
                    note="HarmBench text behaviours, test split",
                ),
                texts=Texts((("Behavior",), ("ContextString",)), id_field="BehaviorID"),
            ),
            # Not evaluated by aloekit, still evaluation data: refused as training input.
            "val": Split("eval", ("harmbench/harmbench_behaviors_text_val.csv",)),
        },
    ),
    Dataset(
        "medsafetybench",
        "harmful",
        "MedSafetyBench MedSafety-Improve split: harmful medical requests with safe responses, category 1-9 = "
        "the AMA principle of medical ethics violated (from the file name).",
        {
            "train": Split(
                "both",
                ("medsafetybench/train/*/*.csv",),
                format="medsafetybench",
                suite=SuiteUse(
                    "medsafetybench_train",
                    "harmful_medical_request",
                    note="MedSafetyBench improvement split: the data stage builds red-teaming DPO pairs from it, so "
                    "a model aligned on those pairs has seen these requests; use it only for models that have not",
                ),
            ),
            "test": Split(
                "eval",
                ("medsafetybench/test/*/*.csv",),
                description="MedSafetyBench MedSafety-Eval split.",
                suite=SuiteUse(
                    "medsafetybench",
                    "harmful_medical_request",
                    note="MedSafetyBench evaluation split; categories = AMA principles of medical ethics",
                ),
                texts=Texts((("harmful_medical_request",),)),
            ),
        },
        Source(local="train"),
    ),
    Dataset(
        "truthfulqa",
        "mcq",
        "TruthfulQA.",
        {
            # What the evaluation scores (MC1 / MC2) and therefore what decontamination checks.
            "mc": Split("eval", (TRUTHFULQA_MC,), TRUTHFULQA_HUB, texts=Texts((("question",),))),
            # The same 817 questions in the generation layout: not evaluated here, refused as training input.
            "generation": Split("eval", ("truthfulqa/TruthfulQA.csv",)),
        },
    ),
    Dataset(
        "bbq",
        "mcq",
        "BBQ social-bias benchmark.",
        {"test": Split("eval", (BBQ_FILES,), texts=Texts((("context", "question"),), id_field="example_id"))},
    ),
    Dataset(
        "advbench",
        "harmful",
        "AdvBench harmful behaviours (general red-teaming) with the compliant opening as harmful_response.",
        {
            "train": Split(
                "both",
                ("advbench/harmful_behaviors.csv",),
                HubRef("walledai/AdvBench", None, "train"),
                format="harmful",
                suite=SuiteUse("advbench", "goal", note="general harmful behaviours"),
            )
        },
        Source(local="train", hub="train"),
    ),
)

__all__ = ["BBQ_FILES", "SAFETY", "TRUTHFULQA_HUB", "TRUTHFULQA_MC"]
