"""Backward compatibility of the simulated ETF/VIX market (adapters.simulator).

``BASELINE`` was captured from the simulator *before* the Mag7 stocks were added (same function,
``capture``, run on the earlier code): SHA-256 digests (first 16 hex digits) of whole arrays and
exact ``repr`` of floats for seeds 1 and 21 on a regular day and an early-close day. Its plain
numbers must still match (to 1e-12: the digests depend on the CPU's SIMD math), and within one
process every ETF/VIX output (1-minute and daily bars, prior closes, last prices, day info,
expiries and chains) is bit-for-bit the same with Mag7 off, on, or queried first.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime, time

import numpy as np
import numpy.typing as npt
import pytest

from adapters.simulator import SimulatedMarket
from core.calendar import NY, session

DAYS = (date(2026, 11, 24), date(2026, 11, 27))  # a Tuesday; the early close after Thanksgiving
ETFS = ("SPY", "QQQ", "IWM")
CHAIN_TIMES = ((9, 30), (10, 0), (12, 45))
HISTORY_START = datetime(2025, 11, 1, tzinfo=NY)


def digest(*arrays: npt.ArrayLike) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(np.asarray(a, dtype=np.float64)).tobytes())
    return h.hexdigest()[:16]


def capture(m: SimulatedMarket) -> dict[str, str]:
    """Digests and exact values of the ETF/VIX outputs of ``m`` on ``DAYS``."""
    out: dict[str, str] = {}
    for day in DAYS:
        s = session(day)
        k = f"{m.seed}/{day:%m%d}"
        for sym in (*ETFS, "VIX"):
            b = m.bars(sym, s.open, s.close)
            d = m.bars(sym, HISTORY_START, s.close, "1d")
            noon = m.last_price(sym, datetime.combine(day, time(12, 0, 30), tzinfo=NY))
            out[f"{k}/{sym}/1m"] = digest(b.open, b.high, b.low, b.close, b.volume)
            out[f"{k}/{sym}/1d"] = digest(d.open, d.high, d.low, d.close, d.volume)
            out[f"{k}/{sym}/c60"] = repr(float(b.close[60]))
            out[f"{k}/{sym}/prior"] = repr(m.prior_close(sym, day))
            out[f"{k}/{sym}/noon"] = repr(noon)
        info = m.day_info(day)
        episode = info.divergence
        div = (
            "-" if episode is None else f"{episode.laggard}@{episode.start:%H%M}{episode.direction}"
        )
        out[f"{k}/info"] = f"{info.regime}|{div}|{info.vix_open!r}|{info.vix_close!r}"
        for sym in ETFS:
            listed = m.expiries(sym, day)
            out[f"{k}/{sym}/expiries"] = digest([e.toordinal() for e in listed])
            for e in (listed[0], listed[3], listed[-1]):
                for hh, mm in CHAIN_TIMES:
                    c = m.chain(sym, e, datetime.combine(day, time(hh, mm), tzinfo=NY))
                    key = f"{k}/{sym}/{e:%m%d}/{hh:02d}{mm:02d}"
                    out[key] = f"{digest(c.strikes, c.bid, c.ask, c.open_interest)}|{c.spot!r}"
    return out


# captured with ``capture`` on the simulator before the Mag7 change
BASELINE: dict[str, str] = {
    "1/1124/IWM/0108/0930": "a84035a86bd45c1b|196.45425972234483",
    "1/1124/IWM/0108/1000": "b7327e34d49ab785|196.18137447472236",
    "1/1124/IWM/0108/1245": "c1497eeed9ade68a|194.5474629271258",
    "1/1124/IWM/1125/0930": "2ce607337d7dfeb3|196.45425972234483",
    "1/1124/IWM/1125/1000": "95821cc14b128a99|196.18137447472236",
    "1/1124/IWM/1125/1245": "e59a9e418d0220d1|194.5474629271258",
    "1/1124/IWM/1202/0930": "dd698a38a5ba543c|196.45425972234483",
    "1/1124/IWM/1202/1000": "1d16f2e4451c719c|196.18137447472236",
    "1/1124/IWM/1202/1245": "6b88912c2e92a517|194.5474629271258",
    "1/1124/IWM/1d": "ec2efe9b6ea46050",
    "1/1124/IWM/1m": "e8198bf832e69131",
    "1/1124/IWM/c60": "196.3516902999501",
    "1/1124/IWM/expiries": "8f17b61f776fe4f0",
    "1/1124/IWM/noon": "194.85203797206628",
    "1/1124/IWM/prior": "196.97922021568746",
    "1/1124/QQQ/0108/0930": "d34d6ab384e07fff|423.94819222571834",
    "1/1124/QQQ/0108/1000": "1acbc51b57cd9b51|423.54444066741786",
    "1/1124/QQQ/0108/1245": "6dd0a959ac5ed703|421.6008446333611",
    "1/1124/QQQ/1124/0930": "e8a75a271106a769|423.94819222571834",
    "1/1124/QQQ/1124/1000": "b1014e15132b38e4|423.54444066741786",
    "1/1124/QQQ/1124/1245": "ceeb41623f74483e|421.6008446333611",
    "1/1124/QQQ/1130/0930": "398ead47a2abdbdd|423.94819222571834",
    "1/1124/QQQ/1130/1000": "ac9186f100287fc2|423.54444066741786",
    "1/1124/QQQ/1130/1245": "64f39733f809f474|421.6008446333611",
    "1/1124/QQQ/1d": "dc4d3407b74c99d2",
    "1/1124/QQQ/1m": "e1a3ea8cb447cc62",
    "1/1124/QQQ/c60": "424.2325897378762",
    "1/1124/QQQ/expiries": "de9f39ba9006eccf",
    "1/1124/QQQ/noon": "421.8918332005413",
    "1/1124/QQQ/prior": "426.3524319275557",
    "1/1124/SPY/0108/0930": "a47a563bd9f187a6|523.924965471732",
    "1/1124/SPY/0108/1000": "5ef63ba63523dda3|524.2679911875548",
    "1/1124/SPY/0108/1245": "2f9aca8c65f04e5f|521.7710393691852",
    "1/1124/SPY/1124/0930": "60d284f81707ef11|523.924965471732",
    "1/1124/SPY/1124/1000": "6fbffe8f4eedbd31|524.2679911875548",
    "1/1124/SPY/1124/1245": "8af2933bc64390ab|521.7710393691852",
    "1/1124/SPY/1130/0930": "aab63e6a0b185019|523.924965471732",
    "1/1124/SPY/1130/1000": "fad882d72e459397|524.2679911875548",
    "1/1124/SPY/1130/1245": "1168064da7c56914|521.7710393691852",
    "1/1124/SPY/1d": "03c393b8a0c241d8",
    "1/1124/SPY/1m": "9f74bcfb918cd058",
    "1/1124/SPY/c60": "525.0803547638106",
    "1/1124/SPY/expiries": "de9f39ba9006eccf",
    "1/1124/SPY/noon": "521.5794553618691",
    "1/1124/SPY/prior": "525.3796982782828",
    "1/1124/VIX/1d": "2525918fb9a2c68f",
    "1/1124/VIX/1m": "428df6dbb2307aeb",
    "1/1124/VIX/c60": "12.209187015063813",
    "1/1124/VIX/noon": "12.872240063982082",
    "1/1124/VIX/prior": "12.330302945521446",
    "1/1124/info": "calm|QQQ@1141-1|12.4433209528343|13.440598528057073",
    "1/1127/IWM/0111/0930": "e247b05bf729220c|192.34476504740897",
    "1/1127/IWM/0111/1000": "b672ead780234a9b|192.58853451558713",
    "1/1127/IWM/0111/1245": "6ae25ba92e6f9207|189.69099340213853",
    "1/1127/IWM/1127/0930": "88889a83bf0fbbb1|192.34476504740897",
    "1/1127/IWM/1127/1000": "ff441dd7f4a7e839|192.58853451558713",
    "1/1127/IWM/1127/1245": "fb08805532709d1a|189.69099340213853",
    "1/1127/IWM/1204/0930": "016748640f430648|192.34476504740897",
    "1/1127/IWM/1204/1000": "73397451843fb684|192.58853451558713",
    "1/1127/IWM/1204/1245": "3586dd2ec29e7dd9|189.69099340213853",
    "1/1127/IWM/1d": "b32c2e365e308389",
    "1/1127/IWM/1m": "c022a0df1b02f7f1",
    "1/1127/IWM/c60": "192.88862393494225",
    "1/1127/IWM/expiries": "9a1114ff0e9bae2e",
    "1/1127/IWM/noon": "191.02316300163898",
    "1/1127/IWM/prior": "191.58178606152967",
    "1/1127/QQQ/0111/0930": "fb3cee42245f9bda|414.6042548453478",
    "1/1127/QQQ/0111/1000": "6973cde72a1afd7a|415.50890115964586",
    "1/1127/QQQ/0111/1245": "593bb230cacf1868|410.271429777017",
    "1/1127/QQQ/1127/0930": "2ee89d717b7e95db|414.6042548453478",
    "1/1127/QQQ/1127/1000": "99a7b6e92a6e0428|415.50890115964586",
    "1/1127/QQQ/1127/1245": "1c20fe7523989843|410.271429777017",
    "1/1127/QQQ/1202/0930": "d806e7e34359bc83|414.6042548453478",
    "1/1127/QQQ/1202/1000": "372be22b3d420711|415.50890115964586",
    "1/1127/QQQ/1202/1245": "4df89c31c074c8df|410.271429777017",
    "1/1127/QQQ/1d": "9125fb2ec4baf59f",
    "1/1127/QQQ/1m": "cd101c3d99ed6a7b",
    "1/1127/QQQ/c60": "416.2316521938069",
    "1/1127/QQQ/expiries": "d577c53a3383bbbe",
    "1/1127/QQQ/noon": "412.0236487560565",
    "1/1127/QQQ/prior": "412.43668118686634",
    "1/1127/SPY/0111/0930": "a03f93adcdd9f626|515.683132078962",
    "1/1127/SPY/0111/1000": "fef277eaa005888f|516.3385625718779",
    "1/1127/SPY/0111/1245": "b56b892228708641|511.3643882642151",
    "1/1127/SPY/1127/0930": "27f19080f10f0b64|515.683132078962",
    "1/1127/SPY/1127/1000": "4842b04cbb17f6e8|516.3385625718779",
    "1/1127/SPY/1127/1245": "b1fdc6931d7174ed|511.3643882642151",
    "1/1127/SPY/1202/0930": "7482a80f6f6ea768|515.683132078962",
    "1/1127/SPY/1202/1000": "e40a8e3681e83b3e|516.3385625718779",
    "1/1127/SPY/1202/1245": "7314b1a438cee2ff|511.3643882642151",
    "1/1127/SPY/1d": "056c33eae8ad94d9",
    "1/1127/SPY/1m": "0d84d7c1042756c0",
    "1/1127/SPY/c60": "517.1988314161667",
    "1/1127/SPY/expiries": "d577c53a3383bbbe",
    "1/1127/SPY/noon": "513.2463235085495",
    "1/1127/SPY/prior": "513.6491781220634",
    "1/1127/VIX/1d": "945a0a9bf7872df7",
    "1/1127/VIX/1m": "f123b93b32662eba",
    "1/1127/VIX/c60": "14.203628910855741",
    "1/1127/VIX/noon": "14.879544997284464",
    "1/1127/VIX/prior": "14.058890423107549",
    "1/1127/info": "trend|-|14.263287460387268|15.053790961511847",
    "21/1124/IWM/0108/0930": "a71196339dd0e68e|314.93202388258305",
    "21/1124/IWM/0108/1000": "c4ed32601129806e|316.08797952124473",
    "21/1124/IWM/0108/1245": "aa3398950c29423a|314.76574710999705",
    "21/1124/IWM/1125/0930": "109efed0a43893b2|314.93202388258305",
    "21/1124/IWM/1125/1000": "f26a26332357f04a|316.08797952124473",
    "21/1124/IWM/1125/1245": "307bbfeb8fe3fdae|314.76574710999705",
    "21/1124/IWM/1202/0930": "923c7e4d63539f66|314.93202388258305",
    "21/1124/IWM/1202/1000": "e3988cbdf8e54a52|316.08797952124473",
    "21/1124/IWM/1202/1245": "28f2387dbd46cc86|314.76574710999705",
    "21/1124/IWM/1d": "6dc6756bc6517d3a",
    "21/1124/IWM/1m": "a3ba7176b544f5e4",
    "21/1124/IWM/c60": "315.05312829610233",
    "21/1124/IWM/expiries": "8f17b61f776fe4f0",
    "21/1124/IWM/noon": "315.7293920426704",
    "21/1124/IWM/prior": "315.80576626825615",
    "21/1124/QQQ/0108/0930": "5f928ffce98ab52f|633.9388573296216",
    "21/1124/QQQ/0108/1000": "7bf4632829728743|636.0220985113942",
    "21/1124/QQQ/0108/1245": "babad49b81fb3fe7|632.636905864699",
    "21/1124/QQQ/1124/0930": "fe7a4620e41380b1|633.9388573296216",
    "21/1124/QQQ/1124/1000": "c4e77bbb62a4206e|636.0220985113942",
    "21/1124/QQQ/1124/1245": "7fa3e82b6ef02334|632.636905864699",
    "21/1124/QQQ/1130/0930": "7978ff42b874a90e|633.9388573296216",
    "21/1124/QQQ/1130/1000": "db8221e94c9fc309|636.0220985113942",
    "21/1124/QQQ/1130/1245": "272cb61e773583bb|632.636905864699",
    "21/1124/QQQ/1d": "ac6106e329132fc5",
    "21/1124/QQQ/1m": "9f8fbefcbf195b52",
    "21/1124/QQQ/c60": "633.6961778315492",
    "21/1124/QQQ/expiries": "de9f39ba9006eccf",
    "21/1124/QQQ/noon": "633.6858557235773",
    "21/1124/QQQ/prior": "636.7998377670735",
    "21/1124/SPY/0108/0930": "dc8489fb399596e1|751.7270554935664",
    "21/1124/SPY/0108/1000": "9007aad835c0f706|753.2627573612741",
    "21/1124/SPY/0108/1245": "d48980a9ec73b215|751.1980582988001",
    "21/1124/SPY/1124/0930": "3ac4837fbee3c800|751.7270554935664",
    "21/1124/SPY/1124/1000": "b38d8db220d0372f|753.2627573612741",
    "21/1124/SPY/1124/1245": "0144b6323f1956da|751.1980582988001",
    "21/1124/SPY/1130/0930": "157ed15d4cfe9cd2|751.7270554935664",
    "21/1124/SPY/1130/1000": "de7a2afad17ee88e|753.2627573612741",
    "21/1124/SPY/1130/1245": "71ce1f66ac5dffc9|751.1980582988001",
    "21/1124/SPY/1d": "ef5bea88633bbebe",
    "21/1124/SPY/1m": "d5611259cabd46d3",
    "21/1124/SPY/c60": "751.4038879789063",
    "21/1124/SPY/expiries": "de9f39ba9006eccf",
    "21/1124/SPY/noon": "751.9789983202977",
    "21/1124/SPY/prior": "754.4608281011506",
    "21/1124/VIX/1d": "30670fe348ba0cd8",
    "21/1124/VIX/1m": "b68e2043ca14933c",
    "21/1124/VIX/c60": "9.160319175870432",
    "21/1124/VIX/noon": "8.855181157038066",
    "21/1124/VIX/prior": "9.000000000000002",
    "21/1124/info": "normal|IWM@13551|9.105896798510187|9.508765486442966",
    "21/1127/IWM/0111/0930": "74c8816fdcff78df|318.1544463506316",
    "21/1127/IWM/0111/1000": "bfa435bd53f84978|316.62205380673277",
    "21/1127/IWM/0111/1245": "fe4bdc69fc3c0661|315.29636793707687",
    "21/1127/IWM/1127/0930": "4f7dde4fd79ac2aa|318.1544463506316",
    "21/1127/IWM/1127/1000": "748847bdfb019d99|316.62205380673277",
    "21/1127/IWM/1127/1245": "59f0a58725418aa5|315.29636793707687",
    "21/1127/IWM/1204/0930": "de93820050f20e83|318.1544463506316",
    "21/1127/IWM/1204/1000": "8c7511d9e168b7cc|316.62205380673277",
    "21/1127/IWM/1204/1245": "5154887793ce32c7|315.29636793707687",
    "21/1127/IWM/1d": "36e9d96bd8768f6b",
    "21/1127/IWM/1m": "d9ee1f7f8c4fccf2",
    "21/1127/IWM/c60": "316.3219758155708",
    "21/1127/IWM/expiries": "9a1114ff0e9bae2e",
    "21/1127/IWM/noon": "315.8164117590802",
    "21/1127/IWM/prior": "318.3168290505109",
    "21/1127/QQQ/0111/0930": "138bd39f4cfd105b|641.4449160980572",
    "21/1127/QQQ/0111/1000": "4f27cd3196673a66|639.9104123357537",
    "21/1127/QQQ/0111/1245": "cfe2e7e9eb0e9ee6|635.8366203928914",
    "21/1127/QQQ/1127/0930": "9004318846af39ab|641.4449160980572",
    "21/1127/QQQ/1127/1000": "2f18ead776eb17f4|639.9104123357537",
    "21/1127/QQQ/1127/1245": "81c7aa88aee86eb6|635.8366203928914",
    "21/1127/QQQ/1202/0930": "c34b622d282a733f|641.4449160980572",
    "21/1127/QQQ/1202/1000": "6830c3e01f3bc5e8|639.9104123357537",
    "21/1127/QQQ/1202/1245": "69b9184f8bc4dacc|635.8366203928914",
    "21/1127/QQQ/1d": "6e18f4fc01043eb6",
    "21/1127/QQQ/1m": "3be3edbdaf2cf84e",
    "21/1127/QQQ/c60": "638.1379070002696",
    "21/1127/QQQ/expiries": "d577c53a3383bbbe",
    "21/1127/QQQ/noon": "636.4614579075317",
    "21/1127/QQQ/prior": "641.5119694849499",
    "21/1127/SPY/0111/0930": "3496a2b4166df4c2|756.9706165942481",
    "21/1127/SPY/0111/1000": "4d740b06ef4d1d1c|755.3089411669685",
    "21/1127/SPY/0111/1245": "be419253c5964de4|752.0781058009607",
    "21/1127/SPY/1127/0930": "1baac256e405e540|756.9706165942481",
    "21/1127/SPY/1127/1000": "c98fc225767cca9a|755.3089411669685",
    "21/1127/SPY/1127/1245": "abc78ab244cee0f2|752.0781058009607",
    "21/1127/SPY/1202/0930": "8b3f5806dfb337cc|756.9706165942481",
    "21/1127/SPY/1202/1000": "30bfc27715f90025|755.3089411669685",
    "21/1127/SPY/1202/1245": "fc3503fbad13fee5|752.0781058009607",
    "21/1127/SPY/1d": "6f0aad4e952172e9",
    "21/1127/SPY/1m": "49cbd7809ce5e650",
    "21/1127/SPY/c60": "754.7010241192371",
    "21/1127/SPY/expiries": "d577c53a3383bbbe",
    "21/1127/SPY/noon": "753.2638823162462",
    "21/1127/SPY/prior": "757.2515616736291",
    "21/1127/VIX/1d": "a3c02a9357da2937",
    "21/1127/VIX/1m": "14d9ff930318a702",
    "21/1127/VIX/c60": "9.119018044044827",
    "21/1127/VIX/noon": "9.07353761428759",
    "21/1127/VIX/prior": "9.000000000000002",
    "21/1127/info": "trend|QQQ@10001|9.000000000000002|9.000000000000002",
}


def scalars(values: dict[str, str]) -> dict[str, list[float]]:
    """The plain numbers in ``capture``'s values (closes, prior closes, last prices, VIX open and
    close, chain spots), without the array digests."""
    out: dict[str, list[float]] = {}
    for key, value in values.items():
        parts = value.replace("|", " ").split()
        numbers = []
        for part in parts:
            try:
                numbers.append(float(part))
            except ValueError:
                continue  # a digest, a regime name, an episode
        if numbers:
            out[key] = numbers
    return out


@pytest.mark.parametrize("seed", [1, 21])
def test_etf_outputs_when_mag7_added_then_numbers_match_baseline(seed: int) -> None:
    """Against the values captured before the Mag7 change: every plain number to 1e-12
    relative. The array digests are not compared: numpy's exp/log take CPU-specific SIMD paths
    (AVX2 vs AVX-512) that may differ in the last bit, so a digest of a whole array is only
    reproducible on the machine that captured it (16-20 of 102 differ on an AVX-512 host). The
    bit-for-bit checks are the same-process comparisons below."""
    got = capture(SimulatedMarket(seed))
    want = {k: v for k, v in BASELINE.items() if k.startswith(f"{seed}/")}
    assert len(want) == len(got) > 100
    have, expect = scalars(got), scalars(want)
    assert set(have) == set(expect)
    for key, numbers in expect.items():
        assert have[key] == pytest.approx(numbers, rel=1e-12, abs=0), key


def test_etf_outputs_when_stocks_queried_first_then_bit_identical() -> None:
    m = SimulatedMarket(21)
    day = DAYS[0]
    s = session(day)
    for sym in ("AAPL", "NVDA", "META"):
        m.bars(sym, HISTORY_START, s.close, "1d")
        m.chain(sym, m.expiries(sym, day)[1], datetime.combine(day, time(10, 0), tzinfo=NY))
    m.atm_iv_history("TSLA", day, 300)
    m.earnings_dates("MSFT", date(2026, 1, 1), date(2026, 12, 31))
    assert capture(m) == capture(SimulatedMarket(21))


def test_etf_outputs_when_mag7_disabled_then_bit_identical() -> None:
    from adapters.simulator import SimulatorConfig

    assert capture(SimulatedMarket(1, SimulatorConfig(mag7=None))) == capture(SimulatedMarket(1))
