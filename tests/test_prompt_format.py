"""How a prompt reaches the model: plain text (after BOS where the tokenizer adds one) or the tokenizer's chat
template, resolved once at `scd prepare` and used by every stage's encoding (scd/data.py)."""
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, processors

from scd.data import encode, prompt_wrap, resolve_prompt_format
from scd.tokenizer import train_tokenizer

ROWS = [{"id": "r0", "prompt": "abcabc=", "answer": "cab"}]


def _bos_tokenizer():
    """A word-level tokenizer whose plain call adds BOS, as Llama-3's does."""
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["<pad>", "<eos>", "<bos>", "a", "b", "c", "="])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>")


def test_trained_tokenizers_stay_plain_and_unchanged():
    tok = train_tokenizer("char", ["abcabc=cab"])
    assert resolve_prompt_format(tok, "auto") == "plain"
    assert prompt_wrap(tok) == ([], [])
    (e,) = encode(ROWS, tok, 64)
    assert e.prompt_ids == tok("abcabc=", add_special_tokens=False)["input_ids"]
    with pytest.raises(ValueError, match="no chat template"):
        resolve_prompt_format(tok, "chat")
    with pytest.raises(ValueError, match="use auto, plain or chat"):
        resolve_prompt_format(tok, "markdown")


def test_plain_prompts_start_with_bos_where_the_tokenizer_adds_one():
    tok = _bos_tokenizer()
    assert tok("a")["input_ids"] == [2, 3]
    (e,) = encode(ROWS, tok, 64)
    assert e.prompt_ids == [2, 3, 4, 5, 3, 4, 5, 6] and e.answer_ids == [5, 3, 4, 1]
    (cut,) = encode(ROWS, tok, 8)  # 4 answer tokens: BOS and the prompt's last 3 tokens
    assert cut.prompt_ids == [2, 4, 5, 6]


def test_chat_prompts_wrap_the_prompt_in_the_template_and_truncation_spares_it():
    tok = train_tokenizer("char", ["abcabc=cab<>|/ut"])
    tok.chat_template = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}|{% endfor %}"
                         "{% if add_generation_prompt %}/{% endif %}")
    assert resolve_prompt_format(tok, "auto") == "chat"
    tok.prompt_format = "chat"
    ids = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    assert prompt_wrap(tok) == (ids("<user>"), ids("|/"))
    (e,) = encode(ROWS, tok, 64)
    assert e.prompt_ids == ids("<user>abcabc=|/")
    (spaced,) = encode([dict(ROWS[0], answer="  cab")], tok, 64)  # the assistant turn starts with its content
    assert spaced.answer_ids == e.answer_ids == ids("cab") + [tok.eos_token_id]
    (cut,) = encode(ROWS, tok, len(ids("<user>bc=|/")) + 4)
    assert cut.prompt_ids == ids("<user>bc=|/")
    with pytest.raises(ValueError, match="leave no room for the prompt"):
        encode(ROWS, tok, len(ids("<user>|/")) + 4)
