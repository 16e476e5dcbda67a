"""Names and tags are checked against the grammar of the system that receives them."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from console.errors import ValidationError
from console.names import show, validate_dns_label, validate_release_id, validate_tag

OCI_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")


@pytest.mark.parametrize("tag", ["1.2.3", "v1", "3f2a9c1-42", "_x", "A" * 128, "latest",
                                 "1.0.0-rc.1_build.7"])
def test_valid_tags(tag):
    assert validate_tag(tag) == tag


@pytest.mark.parametrize("tag, reason", [
    ("", "expected an image tag"), (None, "expected an image tag"), (5, "expected an image tag"),
    ("-x", "must not start with '.' or '-'"), (".x", "must not start"),
    ("a b", "not a valid image tag"), ("a:b", "not a valid image tag"),
    ("a/b", "not a valid image tag"), ("x" * 129, "longer than 128 characters (129)"),
    ("1.0;rm -rf /", "not a valid image tag"), ("é", "not a valid image tag"),
    ("v1\n", "not a valid image tag"), ("$(id)", "not a valid image tag"),
])
def test_invalid_tags_name_the_field(tag, reason):
    with pytest.raises(ValidationError) as info:
        validate_tag(tag, field="--tag")
    message = str(info.value)
    assert message.startswith("--tag: ")
    assert reason in message
    assert "\n" not in message  # control characters are shown escaped (repr)


@given(st.text(max_size=140))
def test_tag_grammar_matches_the_oci_spec(text):
    ok = OCI_TAG.fullmatch(text) is not None
    try:
        validate_tag(text)
    except ValidationError:
        assert not ok
    else:
        assert ok


def test_long_bad_values_are_truncated_in_messages():
    secret_like = "eyJhbGciOi" + "x" * 500
    with pytest.raises(ValidationError) as info:
        validate_tag(secret_like + " ")
    assert len(str(info.value)) < 200
    assert "..." in str(info.value)
    assert show("x" * 100).endswith("...") and len(show("x" * 100)) == 40
    assert show("ok") == "'ok'"


@pytest.mark.parametrize("name", ["a", "prod-eu", "prod-eu-10pct", "0", "a" * 63, "1a-b2"])
def test_valid_dns_labels(name):
    assert validate_dns_label(name) == name


@pytest.mark.parametrize("name, reason", [
    ("Prod", "not a valid DNS-1123 label"), ("-a", "not a valid"), ("a-", "not a valid"),
    ("a_b", "not a valid"), ("a.b", "not a valid"), ("", "expected a name"),
    ("a" * 64, "too long (64 characters, at most 63)"), (None, "expected a name"),
])
def test_invalid_dns_labels(name, reason):
    with pytest.raises(ValidationError) as info:
        validate_dns_label(name, field="cluster id")
    assert str(info.value).startswith("cluster id: ")
    assert reason in str(info.value)


@given(st.text(alphabet="abcz019-_.A", max_size=70))
def test_dns_label_grammar(text):
    ok = (0 < len(text) <= 63 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", text)
          is not None)
    try:
        validate_dns_label(text)
    except ValidationError:
        assert not ok
    else:
        assert ok


@pytest.mark.parametrize("rid", ["20261125-194100-3f2a9c1", "r1", "a.b_c-d", "X" * 63])
def test_valid_release_ids(rid):
    assert validate_release_id(rid) == rid


@pytest.mark.parametrize("rid", ["", "-a", "a-", "a b", "a/b", "X" * 64, None, "a\nb"])
def test_invalid_release_ids(rid):
    with pytest.raises(ValidationError, match=r"^--release: "):
        validate_release_id(rid, field="--release")
