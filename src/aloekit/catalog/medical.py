"""Medical multiple-choice, medical instruction and general datasets: where their files are, their Hub copies,
their splits and what each split is for. Paths are inside a data folder laid out like ``shared/data``."""

from __future__ import annotations

from aloekit.catalog.model import BenchmarkUse, Dataset, HubRef, Source, Split

MMLU_MEDICAL = (
    "anatomy",
    "clinical_knowledge",
    "college_biology",
    "college_medicine",
    "medical_genetics",
    "professional_medicine",
)

PUBMEDQA_LABELED = "pubmedqa/ori_pqal.json"
PUBMEDQA_TEST_IDS = "pubmedqa/test_ground_truth.json"
"""The official 500-PMID test split of PQA-L (PMID -> label); the labeled file's other 500 PMIDs are the pool."""


def _mmlu_splits() -> dict[str, Split]:
    splits = {
        "dev": Split("train", ("mmlu_medical/dev/*.csv",), format="mmlu_csv"),
        "auxiliary_train": Split("train", hub=HubRef("cais/mmlu", "auxiliary_train", "train"), format="mmlu_hub"),
    }
    for subject in MMLU_MEDICAL:
        splits[f"{subject}_dev"] = Split(
            "train", (f"mmlu_medical/dev/{subject}_dev.csv",), HubRef("cais/mmlu", subject, "dev")
        )
        bench = BenchmarkUse(
            f"mmlu_{subject}", "mmlu", "mmlu", fewshot=f"{subject}_dev", subject=subject, lm_eval_task=f"mmlu_{subject}"
        )
        splits[f"{subject}_test"] = Split(
            "eval",
            (f"mmlu_medical/test/{subject}_test.csv",),
            HubRef("cais/mmlu", subject, "test"),
            benchmarks=(bench,),
        )
    return splits


MCQ = (
    Dataset(
        "medqa",
        "mcq",
        "MedQA USMLE, 4 options, train split.",
        {
            "train": Split(
                "train", ("medqa/train.jsonl",), HubRef("GBaker/MedQA-USMLE-4-options", None, "train"), format="medqa"
            ),
            "test": Split(
                "eval",
                ("medqa/test.jsonl",),
                HubRef("GBaker/MedQA-USMLE-4-options", None, "test"),
                benchmarks=(BenchmarkUse("medqa_4options", "medqa", "medqa", lm_eval_task="medqa_4options"),),
            ),
        },
        Source(local="train", hub="train"),
    ),
    Dataset(
        "medmcqa",
        "mcq",
        "MedMCQA (Indian medical entrance exams) with expert explanations. The local file is the MIRAGE copy of "
        "the VALIDATION split (cop 1-based), which is also the medmcqa evaluation benchmark: train on it only "
        "knowing that (mixtures flag it); the Hub copy is the train split (cop 0-based).",
        {
            # The medmcqa source reads this evaluation split on purpose (the only local MedMCQA), see above.
            "validation": Split(
                "eval",
                ("medmcqa/dev.jsonl",),
                HubRef("openlifescienceai/medmcqa", None, "validation"),
                format="medmcqa",
                benchmarks=(BenchmarkUse("medmcqa", "medmcqa", "medmcqa", lm_eval_task="medmcqa"),),
            ),
            "train": Split("train", hub=HubRef("openlifescienceai/medmcqa", None, "train"), format="medmcqa_hub"),
        },
        Source(local="validation", hub="train"),
    ),
    Dataset(
        "pubmedqa",
        "mcq",
        "PubMedQA PQA-L, the 500 labeled questions outside the official test split (ori_pqal.json minus the "
        "PMIDs of test_ground_truth.json); abstract as context, long answer as explanation.",
        {
            # One labeled file holds both splits: the pool's reader leaves the test PMIDs out.
            "pool": Split(
                "train",
                (PUBMEDQA_LABELED,),
                HubRef("bigbio/pubmed_qa", "pubmed_qa_labeled_fold0_source", "train+validation"),
                format="pubmedqa_pool",
                hub_format="pubmedqa",
            ),
            "test": Split(
                "eval",
                (PUBMEDQA_LABELED, PUBMEDQA_TEST_IDS),
                HubRef("bigbio/pubmed_qa", "pubmed_qa_labeled_fold0_source", "test"),
                benchmarks=(BenchmarkUse("pubmedqa", "pubmedqa", "pubmedqa", lm_eval_task="pubmedqa"),),
            ),
        },
        Source(local="pool", hub="pool"),
    ),
    Dataset(
        "pubmedqa_artificial",
        "mcq",
        "PubMedQA PQA-A, 211k automatically labeled yes/no questions (same layout as PQA-L).",
        {
            "train": Split(
                "train",
                ("pubmedqa/ori_pqaa.json",),
                HubRef("qiaojin/PubMedQA", "pqa_artificial", "train"),
                format="pubmedqa",
                hub_format="pubmedqa_qiaojin",
            )
        },
        Source(local="train", hub="train"),
    ),
    Dataset(
        "mmlu",
        "mcq",
        "MMLU training material: locally the medical subjects' dev (5-shot exemplar) files, on the Hub the "
        "auxiliary_train set (ARC, OBQA, RACE, ... in MMLU's layout).",
        _mmlu_splits(),
        Source(local="dev", hub="auxiliary_train"),
    ),
    Dataset(
        "medexqa",
        "mcq",
        "MedExQA train split (20 questions over 5 specialties; medagents-benchmark layout).",
        {
            "train": Split("train", ("medexqa/train.jsonl",), format="medqa"),
            "test": Split(
                "eval",
                ("medexqa/test.jsonl",),
                benchmarks=(BenchmarkUse("medexqa", "medqa", "medqa", fewshot="train"),),
            ),
        },
        Source(local="train"),
    ),
    Dataset(
        "careqa",
        "mcq",
        "CareQA (Spanish healthcare specialisation exams), English.",
        {
            "test": Split(
                "eval",
                ("careqa/test.jsonl",),
                HubRef("HPAI-BSC/CareQA", "CareQA_en", "test"),
                benchmarks=(BenchmarkUse("careqa", "careqa", "medmcqa", lm_eval_task="careqa_en"),),
            )
        },
    ),
    Dataset(
        "headqa",
        "mcq",
        "HEAD-QA (Spanish healthcare specialisation exams), English, train split.",
        {
            "train": Split(
                "train", ("headqa/train.jsonl",), HubRef("EleutherAI/headqa", "en", "train"), format="headqa"
            ),
            "test": Split(
                "eval",
                ("headqa/test.jsonl",),
                HubRef("EleutherAI/headqa", "en", "test"),
                benchmarks=(BenchmarkUse("headqa", "headqa", "headqa", choices="texts", lm_eval_task="headqa_en"),),
            ),
        },
        Source(local="train", hub="train"),
    ),
)

INSTRUCTIONS = (
    Dataset(
        "lookalike",
        "benign",
        "Benign look-alike requests written for aloekit (homonyms, figurative language, safe targets and "
        "contexts, definitions, history, medical safety questions): prompts only, answered by a responder; "
        "they keep a safety-trained model helpful on safe questions that sound unsafe.",
        {"built_in": Split("train", format="benign")},
        Source(local="built_in", built_in="lookalike"),
    ),
    Dataset(
        "medicationqa",
        "chat",
        "MedicationQA consumer medication questions with MedlinePlus answers (Hub copy assumed to keep the "
        "spreadsheet's columns); unanswered questions are counted as 'empty answer'.",
        {
            "train": Split(
                "train",
                ("medicationqa/derived_medicationqa.json",),
                HubRef("truehealth/medicationqa", None, "train"),
                format="medicationqa",
            )
        },
        Source(local="train", hub="train"),
    ),
    Dataset(
        "chatdoctor",
        "chat",
        "ChatDoctor patient-doctor dialogues, alpaca layout: locally GenMedGPT-5k (synthetic), on the Hub "
        "HealthCareMagic-100k (real online consultations), two datasets of the same project.",
        {
            "train": Split(
                "train",
                ("chatdoctor/chatdoctor5k.json",),
                HubRef("lavita/ChatDoctor-HealthCareMagic-100k", None, "train"),
                format="dialogue_alpaca",
            )
        },
        Source(local="train", hub="train"),
    ),
    Dataset(
        "medical_meadow",
        "chat",
        "Medical Meadow WikiDoc patient-information Q/A pairs (alpaca layout).",
        {
            "train": Split(
                "train",
                ("medical_meadow_small/medical_meadow_small.json",),
                HubRef("medalpaca/medical_meadow_wikidoc_patient_information", None, "train"),
                format="alpaca",
            )
        },
        Source(local="train", hub="train"),
    ),
)

GENERAL = (
    # HelpSteer is not declared: it ships per-response scores, not pairs, and the pairing rule is a recipe
    # decision rather than a layout.
    Dataset(
        "capybara",
        "chat",
        "Capybara multi-turn general conversations ('conversation': [{input, output}]).",
        {"train": Split("train", hub=HubRef("LDJnr/Capybara", None, "train"), format="capybara")},
        Source(hub="train", general=True),
    ),
    Dataset(
        "deita",
        "chat",
        "Deita 10k general instruction data (ShareGPT 'conversations').",
        {"train": Split("train", hub=HubRef("hkust-nlp/deita-10k-v0", None, "train"), format="general_sharegpt")},
        Source(hub="train", general=True),
    ),
    Dataset(
        "dpo_mix_7k",
        "preference",
        "Argilla dpo-mix-7k general preference pairs (chosen / rejected as whole conversations).",
        {"train": Split("train", hub=HubRef("argilla/dpo-mix-7k", None, "train"), format="preference")},
        Source(hub="train", general=True),
    ),
)

__all__ = ["GENERAL", "INSTRUCTIONS", "MCQ", "MMLU_MEDICAL", "PUBMEDQA_LABELED", "PUBMEDQA_TEST_IDS"]
