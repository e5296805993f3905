"""A refused ``--resume`` names what differs: for an edited plug-in the two hashes in full (before, the
48-character cut left both sides looking the same) and what the hash covers."""
from __future__ import annotations

from lowbit_sweeps.launch.plan_record import describe_difference, differing_keys


def test_an_edited_plugin_shows_both_hashes_in_full():
    origin = "folder /home/me/research/plugins_with_a_long_path"
    old = {"plugins": {"my_plugins": {"origin": origin, "sha256": "a" * 64}}}
    new = {"plugins": {"my_plugins": {"origin": origin, "sha256": "a" * 60 + "bcde"}}}
    [entry] = differing_keys(old, new)
    text = describe_difference(old, new, entry)
    assert entry == "plugins[my_plugins]"
    assert f'"{"a" * 64}" -> "{"a" * 60}bcde"' in text and "origin" not in text.split("(", 1)[1].split(";")[0]
    assert "covers its source files' paths relative to its folder and their bytes" in text


def test_a_plain_value_is_shown_as_before():
    assert describe_difference({"profile": "default"}, {"profile": "smoke"}, "profile") == 'profile ("default" -> "smoke")'
