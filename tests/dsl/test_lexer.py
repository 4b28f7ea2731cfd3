"""The `.wf` lexer (dsl.md §2): tokens, positions, strings, numbers, comments and lexer errors."""

from __future__ import annotations

import pytest
from runkon_flow.dsl.lexer import KEYWORDS, Token, TokenKind, tokenize
from runkon_flow.errors import WfLexError

from .wf_testing import lex_error, parse

K = TokenKind


def kinds(text: str) -> list[tuple[TokenKind, str]]:
    return [(t.kind, t.value) for t in tokenize(text)][:-1]  # without EOF


def lex_fail(text: str) -> WfLexError:
    with pytest.raises(WfLexError) as info:
        tokenize(text, "flows/x.wf")
    return info.value


# --------------------------------------------------------------------------- tokens and positions


def test_a_token_list_carries_kind_value_line_and_column_and_ends_with_eof() -> None:
    tokens = tokenize('workflow a {\n  call "b"\n}')
    assert tokens == [
        Token(K.KEYWORD, "workflow", 1, 1),
        Token(K.IDENT, "a", 1, 10),
        Token(K.LBRACE, "{", 1, 12),
        Token(K.KEYWORD, "call", 2, 3),
        Token(K.STRING, "b", 2, 8),
        Token(K.RBRACE, "}", 3, 1),
        Token(K.EOF, "", 3, 2),
    ]


def test_columns_count_characters_not_bytes() -> None:
    tokens = tokenize('"é—ü" x')
    assert tokens[1] == Token(K.IDENT, "x", 1, 7)


def test_lines_advance_inside_multi_line_strings() -> None:
    tokens = tokenize('"one\ntwo\nthree" next')
    assert (tokens[1].line, tokens[1].column) == (3, 8)


def test_the_seven_punctuation_tokens() -> None:
    assert [k for k, _ in kinds("{ } [ ] , = .")] == [
        K.LBRACE,
        K.RBRACE,
        K.LBRACKET,
        K.RBRACKET,
        K.COMMA,
        K.EQUALS,
        K.DOT,
    ]


def test_newlines_have_no_role_so_tokens_can_be_joined_on_one_line() -> None:
    assert kinds("call\na{retries=1}") == kinds("call a { retries = 1 }")


# --------------------------------------------------------------------------- whitespace


@pytest.mark.parametrize("space", ["\t", "\r", "\x0b", "\x0c", "\x85", "\xa0", "\u2003", "\u2028", "\u3000"])
def test_unicode_white_space_separates_tokens(space: str) -> None:
    assert kinds(f"call{space}a") == [(K.KEYWORD, "call"), (K.IDENT, "a")]


@pytest.mark.parametrize("char", ["\x1c", "\x1f", "\u200b"])
def test_characters_python_treats_as_space_but_rust_does_not_are_errors(char: str) -> None:
    error = lex_fail(f"call{char}a")
    assert error.message.startswith("Unexpected character '\\u{")
    assert (error.line, error.column) == (1, 5)


def test_a_byte_order_mark_is_an_unexpected_character() -> None:
    error = lex_error("\ufeffworkflow w {}")
    assert error.message == "Unexpected character '\\u{FEFF}' at line 1, col 1"


# --------------------------------------------------------------------------- comments


def test_line_comments_run_to_the_end_of_the_line() -> None:
    assert kinds("call a // call b\ncall c // trailing") == [
        (K.KEYWORD, "call"),
        (K.IDENT, "a"),
        (K.KEYWORD, "call"),
        (K.IDENT, "c"),
    ]


def test_comment_markers_inside_strings_are_text() -> None:
    assert kinds('"http://x // y"') == [(K.STRING, "http://x // y")]


def test_a_comment_at_the_end_of_the_input_is_skipped_entirely() -> None:
    assert kinds("a // b c d") == [(K.IDENT, "a")]


def test_a_single_slash_is_an_error() -> None:
    assert lex_fail("a / b").message == "Unexpected character '/' at line 1, col 3"


def test_hash_is_not_a_comment_and_the_error_names_line_and_column_once() -> None:
    """The spec's message names the place, so `str()` is the spec's `Lexer error in <path>: <message>`
    as is, and the `file:line:col:` renderings take `detail`: the position was said twice
    (`flows/test.wf:3:5: Unexpected character '#' at line 3, col 5`)."""
    error = lex_error("workflow w {\n  call a\n    # nope\n}")
    assert error.message == "Unexpected character '#' at line 3, col 5"
    assert (error.file, error.line, error.column) == ("flows/test.wf", 3, 5)
    assert str(error) == "Lexer error in flows/test.wf: Unexpected character '#' at line 3, col 5"
    assert error.detail == "Unexpected character '#' (hint: comments start with `//`)"


@pytest.mark.parametrize("char", ["-", "+", ":", ";", "(", ")", "'", "*", "@", "$", "!", "<", "|"])
def test_other_characters_are_unexpected(char: str) -> None:
    assert lex_fail(f"x {char}").message == f"Unexpected character '{char}' at line 1, col 3"


# --------------------------------------------------------------------------- strings


@pytest.mark.parametrize(
    ("source", "value"),
    [
        (r'"a\nb"', "a\nb"),
        (r'"a\tb"', "a\tb"),
        (r'"say \"hi\""', 'say "hi"'),
        (r'"back\\slash"', "back\\slash"),
        (r'"\r\{\q"', "r{q"),
        ('"raw\nnew\tline"', "raw\nnew\tline"),
        ('"{{var}} stays"', "{{var}} stays"),
        ('""', ""),
    ],
)
def test_string_escapes(source: str, value: str) -> None:
    assert kinds(source) == [(K.STRING, value)]


def test_single_quotes_do_not_delimit_strings() -> None:
    assert lex_fail("'a'").message == "Unexpected character ''' at line 1, col 1"


@pytest.mark.parametrize(
    ("source", "hint"),
    [
        ("script s { run = 'echo hi' }", 'strings are written in double quotes: `"…"`'),
        ("inputs { name: required }", "options are written `key = value`, not `key: value`"),
        ("call a # note", "comments start with `//`"),
        ("call a / note", "comments start with `//`"),
        ("call a; call b", "nothing separates options or steps: remove the `;`"),
    ],
)
def test_a_stray_character_from_another_language_says_what_to_write(source: str, hint: str) -> None:
    """A newcomer's `'text'`, `key: value`, `# comment` or `;` got only `Unexpected character`; the
    printed detail now says what the language wants there (the spec's message is unchanged)."""
    error = lex_fail(source)
    assert error.message.startswith("Unexpected character")
    assert error.detail.startswith(f"Unexpected character '{source[error.column - 1]}' (hint: ")
    assert hint in error.detail


def test_triple_quotes_are_not_a_heredoc() -> None:
    assert kinds('"""doc"""') == [(K.STRING, ""), (K.STRING, "doc"), (K.STRING, "")]
    error = lex_fail('x """doc')
    assert error.message == "Unterminated string literal"
    assert error.column == 5


def test_an_unterminated_string_is_reported_at_its_opening_quote() -> None:
    error = lex_fail('workflow w {\n  script s { run = "never closed }\n}\n')
    assert error.message == "Unterminated string literal"
    assert (error.line, error.column) == (2, 20)
    assert error.file == "flows/x.wf"


def test_a_backslash_at_the_very_end_is_an_unterminated_escape() -> None:
    assert lex_fail('a "abc\\').message == "Unterminated string escape"


def test_an_escaped_closing_quote_leaves_the_string_open() -> None:
    assert lex_fail('"abc\\"').message == "Unterminated string literal"


# --------------------------------------------------------------------------- integers


def test_integers_are_carried_as_canonical_decimal_text() -> None:
    assert kinds("007 0 000 4294967295") == [
        (K.INT, "7"),
        (K.INT, "0"),
        (K.INT, "0"),
        (K.INT, "4294967295"),
    ]


@pytest.mark.parametrize("digits", ["4294967296", "99999999999999999999", "1" * 5000])
def test_integers_beyond_u32_are_lexer_errors(digits: str) -> None:
    error = lex_fail(f"x = {digits}")
    assert error.message == f"Invalid integer '{digits}': number too large to fit in target type"
    assert (error.line, error.column) == (1, 5)


def test_a_decimal_point_makes_two_integers_and_a_dot() -> None:
    assert kinds("1.5") == [(K.INT, "1"), (K.DOT, "."), (K.INT, "5")]


def test_a_unit_suffix_lexes_as_a_separate_identifier() -> None:
    assert kinds("72h") == [(K.INT, "72"), (K.IDENT, "h")]


def test_there_are_no_negative_numbers() -> None:
    assert lex_fail("-1").message == "Unexpected character '-' at line 1, col 1"


# --------------------------------------------------------------------------- identifiers and keywords


def test_identifiers_allow_hyphens_underscores_and_digits_after_the_first_character() -> None:
    assert kinds("review-pr lint_fix _x a--b trailing- x9") == [
        (K.IDENT, "review-pr"),
        (K.IDENT, "lint_fix"),
        (K.IDENT, "_x"),
        (K.IDENT, "a--b"),
        (K.IDENT, "trailing-"),
        (K.IDENT, "x9"),
    ]


def test_an_identifier_cannot_start_with_a_digit() -> None:
    assert kinds("2fa") == [(K.INT, "2"), (K.IDENT, "fa")]


def test_exactly_seventeen_case_sensitive_keywords() -> None:
    assert len(KEYWORDS) == 17
    words = sorted(KEYWORDS)
    assert kinds(" ".join(words)) == [(K.KEYWORD, w) for w in words]
    assert kinds("Call WORKFLOW If") == [(K.IDENT, "Call"), (K.IDENT, "WORKFLOW"), (K.IDENT, "If")]


@pytest.mark.parametrize(
    "word", ["true", "false", "manual", "fail", "continue", "output", "with", "retries", "run"]
)
def test_option_words_are_ordinary_identifiers(word: str) -> None:
    assert kinds(word) == [(K.IDENT, word)]


def test_non_ascii_letters_are_not_identifier_characters() -> None:
    assert lex_fail("café").message == "Unexpected character 'é' at line 1, col 4"


# --------------------------------------------------------------------------- whole file


def test_the_whole_file_is_lexed_even_after_the_workflow() -> None:
    error = lex_error("workflow w {}\n\n  $ trailing")
    assert (error.line, error.column) == (3, 3)


def test_valid_tokens_after_the_workflow_are_ignored() -> None:
    assert parse("workflow w {} workflow other { call x } } ] = 5").name == "w"


def test_errors_without_a_source_path_say_input() -> None:
    with pytest.raises(WfLexError) as info:
        tokenize("#")
    assert str(info.value) == "Lexer error in <input>: Unexpected character '#' at line 1, col 1"
