"""Exports of a trained model to formats other tools run: GGUF (llama.cpp, Ollama, LM Studio)."""
