"""premarket-brief: the advisor's brief from the model or, without a key, the fallback text."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path

import pytest

from tests.fixtures.openai_server import OpenAIServer, text

pytestmark = pytest.mark.usefixtures("prefect_api")

DAY = date(2026, 11, 27)  # Friday after Thanksgiving: early close 13:00
KEY = "sk-test-brief-9876543210"


def _artifact(key: str) -> str | None:
    from prefect.client.orchestration import get_client

    async def read() -> str | None:
        async with get_client() as client:
            arts = await client.read_artifacts()
            found = [a for a in arts if a.key == key]
            return str(found[0].data) if found else None

    return asyncio.run(read())


def test_premarket_brief_when_no_key_then_fallback_brief_written_and_published(tmp_path):
    from flows.premarket import premarket_brief

    out = premarket_brief(
        day=DAY, seed=21, db_url=f"sqlite:///{tmp_path / 'b.db'}", out_dir=str(tmp_path)
    )
    assert out["source"] == "fallback"
    assert out["fallback_reason"] == "no api key"
    body = Path(out["path"]).read_text(encoding="utf-8")
    assert body.startswith("# Pre-market brief 2026-11-27")
    for sym in ("SPY", "QQQ", "IWM"):
        assert sym in body
    assert "early close" in body  # calendar notes reach the fallback text
    assert "fallback text" in (_artifact("premarket-brief") or "")


def test_premarket_brief_when_key_set_then_model_text_and_prompt_without_secrets(tmp_path):
    from blocks.registry import register_documents
    from flows.premarket import premarket_brief

    with OpenAIServer(api_key=KEY) as server:
        server.set_default(text("Gap up in QQQ; VIX calm. Watch the 13:00 early close."))
        register_documents(
            "development",
            {
                "DTE_DEVELOPMENT_OPENAI_API_KEY": KEY,
                "DTE_DEVELOPMENT_OPENAI_BASE_URL": server.base_url,
                "DTE_DEVELOPMENT_IBKR_ACCOUNT": "DU7654321",
            },
            replace=True,
        )
        try:
            out = premarket_brief(
                day=DAY, seed=21, db_url=f"sqlite:///{tmp_path / 'm.db'}", out_dir=str(tmp_path)
            )
        finally:
            register_documents("development", {}, replace=True)
        sent = [r.prompt_text for r in server.completions]
    assert out["source"] == "model"
    assert out["tokens"] > 0
    assert "Watch the 13:00 early close" in Path(out["path"]).read_text(encoding="utf-8")
    assert len(sent) == 1
    prompt = sent[0]
    assert KEY not in prompt and "7654321" not in prompt
    assert "early close" in prompt


def test_premarket_brief_when_holiday_then_skipped_naming_next_session(tmp_path):
    from flows.premarket import premarket_brief

    state = premarket_brief(
        day=date(2026, 11, 26), db_url=f"sqlite:///{tmp_path / 'h.db'}", return_state=True
    )
    assert state.name == "Skipped"
    assert "2026-11-27" in (state.message or "")
