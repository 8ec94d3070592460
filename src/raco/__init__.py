"""raco: reward-free multi-objective preference alignment of language models."""

__version__ = "0.1.0"


def __getattr__(name: str):
    """Lazy top-level API: ``raco.train(config)`` and ``raco.resume(run_dir)`` (see raco.training.loop)."""
    if name in ("train", "resume", "TrainResult", "RunConfig", "load_config"):
        if name in ("RunConfig", "load_config"):
            from raco import config as module
        else:
            from raco.training import loop as module
        return getattr(module, name)
    raise AttributeError(f"module 'raco' has no attribute {name!r}")
