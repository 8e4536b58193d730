"""Benchmarks: the task registry, ULMFiT fine-tuning and classifiers, the `ulmfit bench` runner and its tables;
and the speed benchmark scripts (`prepare_speed.py`, `train_speed.py`, `finetune_bench.py`), run from the command line."""
