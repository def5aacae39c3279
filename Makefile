# YOLOv8 on Triton: `make demo` shows it working, `make test` checks it. Both set up first.
PY := .venv/bin/python
ARGS ?=
DURATION ?= 300
REPLICAS ?= 2

.DEFAULT_GOAL := help
.PHONY: help setup serve demo test lint format clean bench bench-tasks soak gpu-check cluster cluster-bench

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):[^#]*## /\1\t/' | awk -F'\t' '{ printf "  make %-14s %s\n", $$1, $$2 }'

setup:  ## .venv with pinned deps, tritonserver, default model and sample photos (idempotent)
	@bash scripts/setup.sh

serve: setup  ## supervised tritonserver in the foreground on 127.0.0.1 (HTTP 8000, gRPC 8001, metrics 8002); ARGS="--grpc-port 9001"
	$(PY) -m serving $(ARGS)

demo: setup  ## start the server, detect on sample photos, print detections and per-stage cost, stop
	$(PY) -m tools.demo

# Two workers, each running whole test files (their module servers stay theirs): one file's servers load, drain
# and wait while the other's work runs.
test: lint  ## ruff, then unit and integration tests against a real tritonserver
	$(PY) -m pytest -n 2 --dist loadfile

lint: setup  ## ruff check and ruff format --check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: setup  ## ruff format and ruff check --fix
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean:  ## remove the environment, caches and the installed model (ONNX, INT8 model, labels, warm-up data)
	rm -rf .venv .cache model_repository/yolov8_infer/1/*.onnx model_repository/yolov8_infer/1/*.xml \
		model_repository/yolov8_infer/1/*.bin model_repository/yolov8_postprocess/labels.txt model_repository/*/warmup

bench: setup  ## the engine in-process, perf_analyzer on the yolov8 ensemble, perf_analyzer on each stage alone, paired rounds for the headline ratios, each CPU runtime in-process and served, what the cores allow, how a 1080p frame travels, INT8, the fixed cost; writes benchmarks/results/<time>/
	$(PY) -m benchmarks.bench $(ARGS)

bench-tasks: setup  ## each task's test model served, against Ultralytics' predict in-process when ULTRALYTICS_PYTHON names a Python with Ultralytics; writes benchmarks/results/<time>/tasks.json
	$(PY) -m benchmarks.tasks $(ARGS)

soak: setup  ## supervised server on loopback: mixed good/bad clients, a killed client, kill -9 of a stub; DURATION=seconds
	$(PY) -m tools.soak --duration $(DURATION)

gpu-check: setup  ## on a GPU machine: CV-CUDA vs OpenCV, TensorRT FP16 vs ONNX Runtime FP32, short perf_analyzer
	$(PY) -m tools.gpu_check $(ARGS)

cluster: setup  ## REPLICAS=N supervised replicas behind nginx+HAProxy on 127.0.0.1:8001/8000, Prometheus on :9090; Ctrl-C stops all
	$(PY) -m cluster --replicas $(REPLICAS) $(ARGS)

cluster-bench: setup  ## failover gap, throughput with 1 and 2 replicas, the gateway's added latency, the HPA signal (own ports)
	$(PY) -m benchmarks.cluster $(ARGS)
