"""Training stages: SFT and multi-stage DPO, thin wrappers over TRL.

Shared skeleton: ``common`` (:class:`~aloekit.train.common.TrainConfig`, the fields both configs share, versions,
LoRA, precision), ``runfolder`` (claiming OUT, manifests, checkpoints), ``callbacks`` (step timer, TensorBoard,
quiet libraries), ``export`` (the standalone model folder), and ``trl_compat``, the one module that touches TRL's,
transformers' or datasets' private internals. SFT: ``sft`` (the run), ``sft_config``, ``sft_data``, ``sft_trainer``,
``masks``, ``packing``, ``packed_attention``. DPO: ``dpo`` (the stages), ``dpo_config``, ``dpo_data``,
``dpo_trainer``, ``refcache``.
"""
