# YOLOv8 on Triton: `make demo` shows it working, `make test` checks it. Both set up first.
PY := .venv/bin/python
ARGS ?=

.PHONY: setup serve demo test lint format clean

setup:  ## .venv with pinned deps, tritonserver, default model and sample photos (idempotent)
	@bash scripts/setup.sh

serve: setup  ## supervised tritonserver in the foreground on 127.0.0.1 (HTTP 8000, gRPC 8001, metrics 8002); ARGS="--grpc-port 9001"
	$(PY) -m serving $(ARGS)

demo: setup  ## start the server, detect on sample photos, print detections and per-stage cost, stop
	$(PY) -m serving.demo

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: lint  ## ruff, then unit and integration tests against a real tritonserver
	$(PY) -m pytest

format: setup
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean:  ## remove the environment, caches and the installed model
	rm -rf .venv .cache model_repository/yolov8_infer/1/*.onnx model_repository/yolov8_postprocess/labels.txt

# --- GPU path (issue 5) ---
.PHONY: gpu-check
gpu-check: setup  ## on a GPU machine: CV-CUDA vs OpenCV, TensorRT FP16 vs ONNX Runtime FP32, short perf_analyzer
	$(PY) -m serving.gpu_check $(ARGS)

# --- reliability: soak and fault run (issue 6) ---
.PHONY: soak
DURATION ?= 300

soak: setup  ## supervised server on loopback: mixed good/bad clients, a killed client, kill -9 of a stub; DURATION=seconds
	$(PY) -m serving.soak --duration $(DURATION)

# --- benchmarks (issue 3) ---
.PHONY: bench
bench: setup  ## perf_analyzer on the ensemble and each stage, ONNX Runtime in-process; writes benchmarks/results/<time>/
	$(PY) -m benchmarks.bench $(ARGS)

# --- scale-out: a local cluster (issue 15) ---
.PHONY: cluster cluster-bench
REPLICAS ?= 2

cluster: setup  ## REPLICAS=N supervised replicas behind nginx+HAProxy on 127.0.0.1:8001/8000, Prometheus on :9090; Ctrl-C stops all
	$(PY) -m serving.cluster --replicas $(REPLICAS) $(ARGS)

cluster-bench: setup  ## failover gap, throughput with 1 and 2 replicas, the balancer's added latency, the HPA signal (own ports)
	$(PY) -m benchmarks.cluster $(ARGS)
