import pytest

from ghtrader_assets.domain.symbols import (
    SymbolError,
    check_symbol,
    has_l5_depth,
    main_symbol,
    parse_contract,
    parse_variety,
    variety_of,
)


@pytest.mark.parametrize("bad", ["cu", "SHFE.cu;drop", "XXX.cu", "SHFE.", "shfe.cu", "SHFE.cu/../x", "SHFE.cu2403"])
def test_bad_varieties_are_refused(bad: str) -> None:
    with pytest.raises(SymbolError, match="variety"):
        parse_variety(bad)
    with pytest.raises(SymbolError):
        main_symbol(bad)


def test_the_three_kinds_of_symbol() -> None:
    assert parse_variety("CZCE.SR") == ("CZCE", "SR")
    assert parse_contract("CZCE.SR405") == ("CZCE", "SR", "405")
    assert variety_of("SHFE.cu2403") == "SHFE.cu"
    assert main_symbol("DCE.m") == "KQ.m@DCE.m"
    for ok in ("SHFE.cu2403", "KQ.m@SHFE.cu", "CZCE.SR405"):
        assert check_symbol(ok) == ok
    for bad in ("SHFE.cu", "KQ.m@SHFE.cu2403", "KQ.m@", "~SHFE.cu2403", "SHFE.cu24", "SHFE.cu2403'--"):
        with pytest.raises(SymbolError, match="not a futures contract or KQ.m@ main symbol"):
            check_symbol(bad)


def test_which_exchanges_publish_five_levels() -> None:
    assert has_l5_depth("SHFE.cu") and has_l5_depth("INE.sc")
    assert not has_l5_depth("DCE.m") and not has_l5_depth("CFFEX.IF")
