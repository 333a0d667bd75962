# syntax=docker/dockerfile:1.7
# The image every manifest in kuberay/ runs: Ray's own image (Ray 2.60.0 and Python 3.11, as
# pinned in pyproject.toml and run by .venv), the project installed from this checkout, the
# pinned embedding model verified file by file, and the CISI dataset the benchmark jobs read.
#
#   make image [IMAGE=registry.example.com/stratmaster:0.1.0] [DATASETS=../shared/data]
#
# which runs `docker build --build-context datasets=DATASETS -t IMAGE .` (BuildKit: Docker 23+).
ARG RAY_IMAGE=rayproject/ray:2.60.0-py311-cpu
FROM ${RAY_IMAGE}

# torch's CPU wheels (torch==2.13.0 is satisfied by 2.13.0+cpu); PyPI's default build carries
# the CUDA libraries, gigabytes this CPU platform never uses.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    # Serve replicas run user code on their main event loop (cluster/local.py SERVE_PROCESS_ENV);
    # the manifests set it too.
    RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD=0 \
    # The manifests mount the shared data volume here (and set it in the ConfigMap).
    STRATMASTER_DATA_DIR=/home/ray/data

WORKDIR /home/ray/stratmaster

# Dependencies first, from pyproject.toml's exact pins, so a code change does not reinstall them.
COPY --chown=ray:users pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install --extra-index-url "${TORCH_INDEX_URL}" -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The project, editable: configs/ and the package folders stay together under
# /home/ray/stratmaster, where the code looks for configs/ (paths relative to the checkout).
COPY --chown=ray:users . .
RUN pip install --no-deps -e . \
    && python -c "import ray, sys; assert ray.__version__ == '2.60.0', ray.__version__; assert sys.version_info[:2] == (3, 11)" \
    # The pinned model: every file's sha256 against configs/assets.yaml, or the build fails.
    && python -m stratmaster.assets verify \
    && mkdir -p /home/ray/data

# BEIR datasets named by configs/benchmarks/ and configs/sweeps/ ("../shared/data/cisi" from
# the project root, i.e. /home/ray/shared/data/cisi), from the named build context `datasets`.
COPY --from=datasets --chown=ray:users cisi /home/ray/shared/data/cisi

# KubeRay replaces the command with `ray start ...`; this is for `docker run IMAGE`.
CMD ["stratmaster", "--help"]
