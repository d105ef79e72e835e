# `make run`: set up .venv from pinned versions, then a short CGRPO training through the
# ROS 2 node stack (learner + rollout worker processes over DDS) on HalfCheetah-v5. `make test`: lint + types + the whole test suite.
.PHONY: run test lint bootstrap train-single

bootstrap:
	bash scripts/bootstrap.sh

# The main job, sized so that a newcomer sees learning in 1-2 minutes: 50 iterations x 2
# policies x 2048 steps (205k steps) with one rollout worker (faster than two on 2 cores:
# docs/benchmarks.md), CGRPO-Full with the low initial exploration noise of
# config/cgrpo/lownoise.yaml (HalfCheetah-v5 goes from about -20 to about 1,000). It ends by
# printing the run's improvement.
RUN_ARGS = --iterations 50 --config config/cgrpo/lownoise.yaml

run: bootstrap
	.venv/bin/cgrpo train-sim $(RUN_ARGS)

train-single: bootstrap
	.venv/bin/cgrpo train

lint: bootstrap
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy

test: lint
	.venv/bin/python -m pytest -q -p no:cacheprovider --durations=15
