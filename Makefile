# Two commands on a fresh machine (README): `make train` runs the main job (train the dual-head
# detector on the embedded data, report mAP, draw predictions), `make test` the tests.
# Both create .venv and build the extension in place first (torch, then the extension built
# against that torch with --no-build-isolation).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1
export MAX_JOBS ?= 2

.PHONY: install train test test-slow lint format bench ablate info compat compat-ultralytics cuda-emu cuda-emu-mutants cuda-emu-coverage mutation clean
install: $(VENV)/.installed
$(VENV)/.installed: setup.py pyproject.toml $(shell find csrc -type f 2>/dev/null)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_PIN) setuptools wheel ninja numpy
	$(BIN)/pip install -q --no-build-isolation -e ".[test]"
	$(BIN)/dualhead info
	touch $@

train: install
	$(BIN)/dualhead train --out runs/train
	$(BIN)/dualhead predict --weights runs/train/best.pt --out runs/predict

# The ablation over 3 seeds with ultralytics' YOLOv10n / YOLOv8n as outside anchor (RESULTS.md):
# 18 runs, one at a time on a 2-core CPU (about 2.5 h there); a GPU runs 4 at a time.
ablate: install
	$(BIN)/dualhead ablate --seeds 3 --anchors yolov10n,yolov8n --ablate-out runs/ablate

test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow"

# The end-to-end runs marked slow (training to a set mAP, DDP, torch.compile, the ablation's
# failure handling and its ultralytics anchor, the static-libstdc++ build): CI runs them too.
test-slow: install
	$(BIN)/python -m pytest -q -p no:cacheprovider -m slow

# Linters and formatters, configured in pyproject.toml ([tool.ruff]) and .clang-format; CI runs
# `make lint` on the tree, `make format` rewrites it.
LINT_TOOLS := ruff==0.17.6 clang-format==23.1.5
CXX_SOURCES = $(shell git ls-files 'csrc/*.h' 'csrc/*.cpp' 'csrc/*.cu' 'csrc/*.cuh')
lint: install
	$(BIN)/pip install -q $(LINT_TOOLS)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/clang-format --dry-run -Werror $(CXX_SOURCES)

format: install
	$(BIN)/pip install -q $(LINT_TOOLS)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	$(BIN)/clang-format -i $(CXX_SOURCES)

# The CUDA kernels on CPU (csrc/cuda/emu, tests/test_cuda.py) under AddressSanitizer +
# UndefinedBehaviorSanitizer with each launch's blocks in reverse order, then under ThreadSanitizer
# with them shuffled (the seed is logged: DH_EMU_BLOCK_ORDER=shuffle:SEED replays it); ends with every __global__ kernel of
# csrc/cuda and its launch count (fails if one never ran). Several blocks run at once; every launch is
# checked against the register file of sm_80/sm_90 (ptxas' counts: tests/cuda_emu.py resources). ~3 min on 2 cores.
cuda-emu: install
	DH_EMU_BLOCK_ORDER=reverse bash tests/cuda_emu_run.sh asan
	DH_EMU_BLOCK_ORDER=shuffle bash tests/cuda_emu_run.sh tsan
	$(BIN)/python tests/cuda_emu.py report build/cuda_emu/asan.counts.json build/cuda_emu/tsan.counts.json

# The layer's teeth: kernels with a planted defect each (barriers removed, atomics made plain
# within and across blocks, shared memory out of bounds, a host read of device memory, a block
# over its launch bound or the register file, a device-scope atomic on host-mapped memory, flipped
# tie-breaks ...) must be caught, each by the catcher it names, after the clean build passed the
# same tests (docs/cuda_emu.md, docs/testing.md). Race mutants run 3 times each.
cuda-emu-mutants: install
	$(BIN)/python tests/cuda_emu_mutants.py

# Line and branch coverage of the CUDA source (csrc/cuda/*.cu, assign_core.h, anchor_grid.h) by
# the emulated tests (gcov through gcovr); figures and the uncovered branches in RESULTS.md. ~2 min.
cuda-emu-coverage: install
	$(BIN)/pip install -q gcovr==8.8
	$(BIN)/python tests/cuda_emu.py build cov
	find build/cuda_emu/cov -name '*.gcda' -delete
	DUALHEAD_CUDA_EMU_PREBUILT=1 bash tests/cuda_emu_run.sh cov
	$(BIN)/gcovr --root . --object-directory build/cuda_emu/cov/obj --gcov-ignore-parse-errors=negative_hits.warn \
	  --filter 'csrc/cuda/.*\.cu$$' --filter 'csrc/assign_core\.h$$' --filter 'csrc/anchor_grid\.h$$' \
	  --exclude-throw-branches --exclude-unreachable-branches --txt-metric branch --txt-summary \
	  --txt build/cuda_emu/coverage.txt --json-summary build/cuda_emu/coverage.json
	cat build/cuda_emu/coverage.txt

# Mutation testing of the Python library and the detector's loss and data check (mutmut, set up
# in pyproject.toml [tool.mutmut]); the score and the survivors: tests/mutation_score.py, RESULTS.md.
# Not in CI: roughly 2 h on 2 cores (a stopped run resumes where it left off). mutmut forks the test
# process per mutant (from a fork server: pyproject.toml). One OpenMP thread per process, and
# idle OpenMP threads that sleep: the tests that set two threads (the thread-determinism test,
# `dualhead bench`) would otherwise spin against the other child on the 2 cores, ten times slower,
# and their mutants would be scored as killed by time.
MUTMUT := mutmut==3.8.1
mutation: install
	$(BIN)/pip install -q $(MUTMUT)
	OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE $(BIN)/mutmut run --max-children 2
	$(BIN)/python tests/mutation_score.py

bench: install
	$(BIN)/dualhead bench --json benchmarks/results_cpu.json

info: install
	$(BIN)/dualhead info

# One wheel (stable ABI + abi3) tested under other torch releases in fresh venvs (RESULTS.md).
compat: install
	bash benchmarks/compat.sh

# The ultralytics release matrix: loss with and without the patch, release by release (RESULTS.md).
compat-ultralytics: install
	$(BIN)/python benchmarks/compat_ultralytics.py

clean:
	rm -rf build $(VENV) dualhead/_C*.so *.egg-info dist mutants
