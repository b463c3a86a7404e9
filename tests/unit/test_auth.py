import pytest

from shared.contract.roles import Role, generate_api_tokens, parse_api_tokens, role_of
from shared.errors import ConfigurationError


def test_tokens_map_to_roles() -> None:
    assert parse_api_tokens("terminal:abc, admin:xyz,") == {"abc": Role.TERMINAL, "xyz": Role.ADMIN}


def test_an_empty_token_list_admits_nobody() -> None:
    assert parse_api_tokens("") == {}


@pytest.mark.parametrize("spec", ["terminal", "terminal:", "root:abc"])
def test_a_malformed_token_list_fails_fast(spec: str) -> None:
    with pytest.raises(ConfigurationError):
        parse_api_tokens(spec)


def test_generated_tokens_cover_every_role_with_distinct_tokens() -> None:
    tokens = parse_api_tokens(generate_api_tokens())
    assert sorted(tokens.values()) == sorted(Role)
    assert len(tokens) == len(Role)


def test_a_presented_token_finds_its_role_and_nothing_else_does() -> None:
    tokens = parse_api_tokens("dispatcher:abc123,viewer:xyz789")
    assert role_of(tokens, "abc123") is Role.DISPATCHER
    assert role_of(tokens, "xyz789") is Role.VIEWER
    for guess in ("abc12", "abc1234", "", "ABC123", "令牌"):
        assert role_of(tokens, guess) is None
