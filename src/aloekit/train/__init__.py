"""Training stages: SFT and two-stage DPO, thin wrappers over TRL."""
