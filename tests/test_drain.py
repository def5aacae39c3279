"""The drain gate's in-flight count, which the infer stage reads to know whether an image is alone."""

from __future__ import annotations

from python_backends.drain import DrainGate


def test_holds_only_counts_what_entered_and_has_not_left(tmp_path):
    gate = DrainGate(tmp_path)
    assert gate.holds_only(1) and gate.in_flight() == 0
    gate.enter(3)
    assert not gate.holds_only(1) and gate.holds_only(3)
    gate.leave(2)
    assert gate.in_flight() == 1 and gate.holds_only(1)


def test_a_gate_without_a_directory_cannot_tell_an_image_is_alone():
    gate = DrainGate(None)
    gate.enter(1)
    assert not gate.holds_only(1)
