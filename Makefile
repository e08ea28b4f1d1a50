# The two commands of the README: `make run` (set up and run the bridge) and `make test` (set up and run all checks).
.PHONY: run test setup bench

run:
	./scripts/dev.sh run

test:
	./scripts/dev.sh test

setup:
	./scripts/dev.sh setup

bench:
	./scripts/dev.sh setup && ./scripts/dev.sh system-deps && .venv/bin/python bench/pipeline.py && .venv/bin/python bench/api.py
