"""Every custom error of ISonar is asserted, by its decoded message, somewhere in this suite."""

from pathlib import Path

HERE = Path(__file__).parent


def test_every_custom_error_is_asserted_by_a_test(sonar):
    errors = sorted(item["name"] for item in sonar.abi if item["type"] == "error" and item["name"].startswith("Sonar"))
    assert len(errors) == 24
    sources = "".join(p.read_text() for p in HERE.glob("test_*.py") if p.name != Path(__file__).name)
    missing = [name for name in errors if f"E.{name}(" not in sources]
    assert missing == []
