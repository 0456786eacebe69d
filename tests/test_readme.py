"""The README documents every setting and the two commands CI and users rely on."""

from pathlib import Path

from collectivia.settings import describe_settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_documented_with_its_variable():
    missing = [var for var, _, _ in describe_settings() if f"`{var}`" not in README]
    assert missing == []


def test_the_two_commands_and_ci():
    assert "./collectivia.sh start" in README and "./collectivia.sh test" in README
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text(encoding="utf-8")
    assert "./collectivia.sh test" in ci
