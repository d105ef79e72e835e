# `make run`: set up .venv from pinned versions, then a short CGRPO training through the
# ROS 2 node stack (learner + rollout worker processes over DDS) on HalfCheetah-v5. `make test`: lint + types + the whole test suite.
.PHONY: run test lint bootstrap train-single

bootstrap:
	bash scripts/bootstrap.sh

run: bootstrap
	.venv/bin/cgrpo train-sim

train-single: bootstrap
	.venv/bin/cgrpo train

lint: bootstrap
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy

test: lint
	.venv/bin/python -m pytest -q -p no:cacheprovider --durations=15
