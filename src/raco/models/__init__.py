"""Model loading: Hugging Face ids or paths, the offline bundled models, LoRA/full, reference policy."""
