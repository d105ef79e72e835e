# `make run`: set up .venv from pinned versions, then a short CGRPO training through the
# single-process trainer on HalfCheetah-v5 (the node stack once issue 3 lands). `make test`: lint + types + the whole test suite.
.PHONY: run test lint bootstrap train-single

bootstrap:
	bash scripts/bootstrap.sh

run: bootstrap
	.venv/bin/cgrpo train

train-single: bootstrap
	.venv/bin/cgrpo train

lint: bootstrap
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy

test: lint
	.venv/bin/python -m pytest -q -p no:cacheprovider --durations=15
