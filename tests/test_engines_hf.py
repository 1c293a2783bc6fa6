import pytest
from PIL import Image

from pixeljury.engines.base import EngineUnavailable, GenerationParams, ImagePart, TextPart, ChatRequest


def test_unreachable_hub_weights_give_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    from pixeljury.engines.checkpoints import resolve_weights

    with pytest.raises(EngineUnavailable, match="(?s)could not get judge weights 'no-such/judge'.*local directory"):
        resolve_weights("no-such/judge", "abc123", "auto")
    with pytest.raises(EngineUnavailable, match="does not exist"):
        resolve_weights(str(tmp_path / "missing"), None, "local")


def test_modelscope_without_extra_says_what_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_modelscope(name, *a, **kw):
        if name.startswith("modelscope"):
            raise ImportError("No module named 'modelscope'")
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_modelscope)
    from pixeljury.engines.checkpoints import resolve_weights

    with pytest.raises(EngineUnavailable, match=r"pixeljury\[modelscope\]"):
        resolve_weights("qwen/judge", None, "modelscope")


@pytest.mark.slow
def test_batched_left_padded_generation_reports_tokens_and_finish(tiny_model_dir):
    from pixeljury.engines.hf import TransformersEngine

    engine = TransformersEngine(str(tiny_model_dir), batch_size=2)
    assert engine.processor.tokenizer.padding_side == "left"
    img = Image.new("RGB", (64, 48), (10, 200, 30))
    reqs = [ChatRequest(f"r{i}", "system text", [TextPart("short\n" * (1 + 5 * i)), ImagePart(img, "0" * 64),
                                                  TextPart("\nend")]) for i in range(2)]
    params = GenerationParams(max_new_tokens=7)
    gens = engine.generate(reqs, params)
    assert [g.request_id for g in gens] == ["r0", "r1"]
    assert gens[0].prompt_tokens < gens[1].prompt_tokens  # true lengths, not the padded length
    for g in gens:
        assert g.finish_reason in ("stop", "length") and 1 <= g.completion_tokens <= 7
        if g.finish_reason == "length":
            assert g.completion_tokens == 7
    # greedy decoding is deterministic for the same batch
    assert [g.text for g in engine.generate(reqs, params)] == [g.text for g in gens]
    assert engine.describe()["revision"].startswith("local-")


def test_empty_system_text_sends_no_system_message():
    from pixeljury.engines.hf import chat_messages

    img = Image.new("RGB", (4, 4))
    req = ChatRequest("r", "", [ImagePart(img, "0" * 64), TextPart("rate it")])
    msgs = chat_messages(req)
    assert [m["role"] for m in msgs] == ["user"]
    req.system = "be strict"
    assert [m["role"] for m in chat_messages(req)] == ["system", "user"]
