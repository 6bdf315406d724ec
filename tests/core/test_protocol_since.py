"""Options added to a kind after studies were created (`Option.since`): such a study runs with
the new option's default, and its manifest writes the protocol as it was stored."""

from types import SimpleNamespace

import pytest

from studies.core.kinds import Option, StudyKind, full_protocol, register, unregister


@pytest.fixture
def later_kind():
    kind = register(
        StudyKind(
            name="since-test",
            label="Since test",
            options={
                "a": Option(1, "from the start", minimum=0),
                "b": Option(True, "from the start"),
                "late": Option(False, "added in version 2", since=2),
            },
            model_kinds=(),
            participant_page=None,
            action_route="since-test",
            submit=None,
            assignment_state=None,
            finish=None,
        )
    )
    yield kind
    unregister(kind.name)


def study(protocol):
    return SimpleNamespace(kind="since-test", protocol=protocol)


def test_a_stored_protocol_that_predates_an_option_is_written_as_stored(later_kind):
    assert full_protocol(study({"a": 3, "b": True})) == {"a": 3, "b": True}
    # an option of version 1 missing from the stored protocol is still filled in
    assert full_protocol(study({"a": 3})) == {"a": 3, "b": True}


def test_new_and_empty_protocols_write_every_option(later_kind):
    assert full_protocol(study({})) == {"a": 1, "b": True, "late": False}
    assert full_protocol(study(None)) == {"a": 1, "b": True, "late": False}
    stored = later_kind.validate_protocol({"a": 2})  # what a study created now stores
    assert full_protocol(study(stored)) == {"a": 2, "b": True, "late": False}
    assert full_protocol(study({"a": 2, "late": True})) == {"a": 2, "b": True, "late": True}


def test_prompting_browser_options_are_version_2():
    from studies.core.kinds import get_kind

    options = get_kind("prompting").options
    assert options["browser_decoder"].since == 2 and options["browser_decoder"].default is True
    assert options["hover_preview"].since == 2 and options["hover_preview"].default is False
    old = {name: opt.default for name, opt in options.items() if opt.since == 1}
    written = full_protocol(SimpleNamespace(kind="prompting", protocol=old))
    assert "hover_preview" not in written and "browser_decoder" not in written
