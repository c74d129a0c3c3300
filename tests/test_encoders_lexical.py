"""The jieba/BM25 lexical encoder: segmentation, user dictionaries, stable term ids, weights."""

from __future__ import annotations

import pytest

from shoprec.encoders import EncoderUnavailable
from shoprec.encoders.lexical import LexicalEncoder, term_id
from shoprec.indexing.store import SparseVec


@pytest.fixture(scope="module")
def lexical() -> LexicalEncoder:
    return LexicalEncoder()


def test_jieba_segments_a_chinese_title_into_words(lexical: LexicalEncoder) -> None:
    assert lexical.tokens("夏季纯棉T恤男款") == ["夏季", "纯棉", "t恤", "男款"]
    assert lexical.segmented("夏季纯棉T恤男款") == "夏季 纯棉 t恤 男款"


def test_chinese_query_shares_a_term_with_the_title(lexical: LexicalEncoder) -> None:
    document = lexical.encode_document("夏季纯棉T恤男款")
    query = lexical.encode_query("纯棉")
    assert query.indices == [term_id("纯棉")]
    assert set(query.indices) <= set(document.indices)


def test_search_mode_indexes_words_inside_long_words(lexical: LexicalEncoder) -> None:
    document = lexical.tokens("中华人民共和国连衣裙", mode="search")
    assert {"中华人民共和国", "人民", "连衣裙"} <= set(document)
    assert lexical.tokens("中华人民共和国连衣裙", mode="exact") == ["中华人民共和国", "连衣裙"]


def test_user_dictionary_changes_segmentation(tmp_path, lexical: LexicalEncoder) -> None:
    assert "阔腿裤" not in lexical.tokens("冰丝阔腿裤")
    user_dict = tmp_path / "shop.dict"
    user_dict.write_text("冰丝 100 n\n阔腿裤 100 n\n", encoding="utf-8")
    custom = LexicalEncoder(user_dict=user_dict)
    assert custom.tokens("冰丝阔腿裤", mode="exact") == ["冰丝", "阔腿裤"]
    # One encoder's dictionary never leaks into another's.
    assert "阔腿裤" not in LexicalEncoder().tokens("冰丝阔腿裤")


def test_missing_user_dictionary_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(EncoderUnavailable, match="user dictionary not found"):
        LexicalEncoder(user_dict=tmp_path / "absent.dict")


def test_english_is_lowercase_words_without_punctuation_or_stopwords(lexical: LexicalEncoder) -> None:
    assert lexical.tokens("Women's Cotton T-Shirt, Black!") == ["women", "cotton", "t", "shirt", "black"]
    assert lexical.tokens("The bag for the beach") == ["bag", "beach"]
    document = lexical.encode_document("Organic Cotton Shirt")
    assert set(lexical.encode_query("cotton shirts").indices) & set(document.indices) == {term_id("cotton")}


def test_full_width_and_mixed_text(lexical: LexicalEncoder) -> None:
    assert lexical.tokens("Ｔ恤　全棉") == ["t恤", "全棉"]
    assert lexical.tokens("Nike 跑步鞋 2024新款") == ["nike", "跑步", "鞋", "2024", "新款"]


def test_empty_and_punctuation_only_text(lexical: LexicalEncoder) -> None:
    for text in ("", "   ", "!!! ，。、"):
        assert lexical.tokens(text) == []
        assert lexical.encode_document(text) == SparseVec([], [])
        assert lexical.encode_query(text) == SparseVec([], [])


def test_term_ids_are_stable_31_bit_hashes() -> None:
    # Fixed values: a stored index must mean the same thing in every process and release.
    assert term_id("纯棉") == 560523794
    assert term_id("cotton") == 304255247
    assert all(0 <= term_id(t) < 2**31 for t in ("a", "纯棉", "x" * 100))


def test_bm25_tf_weights_saturate_and_normalise_by_length() -> None:
    encoder = LexicalEncoder(k1=1.2, b=0.75, avg_len=4.0)
    once = encoder.encode_document("cotton shirt blue summer")  # 4 tokens = avg_len
    weights = dict(zip(once.indices, once.values))
    assert weights[term_id("cotton")] == pytest.approx(1.0)  # tf=1 at average length: (k1+1)/(1+k1)
    thrice = encoder.encode_document("cotton cotton cotton shirt")
    w3 = dict(zip(thrice.indices, thrice.values))[term_id("cotton")]
    assert w3 == pytest.approx(3 * 2.2 / (3 + 1.2))
    assert 1.0 < w3 < 2.2  # more occurrences help, but with diminishing returns
    longer = encoder.encode_document("cotton shirt blue summer soft light airy casual")
    assert dict(zip(longer.indices, longer.values))[term_id("cotton")] < 1.0


def test_vectors_have_sorted_unique_indices_and_unit_query_weights(lexical: LexicalEncoder) -> None:
    document = lexical.encode_document("红色 红色 连衣裙 red dress red")
    assert document.indices == sorted(set(document.indices))
    query = lexical.encode_query("红色 红色 连衣裙")
    assert query.indices == sorted(set(query.indices)) and set(query.values) == {1.0}
    assert len(query.indices) == 2


def test_fit_sets_average_length() -> None:
    encoder = LexicalEncoder().fit(["cotton shirt", "red silk dress long"])
    assert encoder.avg_len == pytest.approx(3.0)


def test_a_text_is_segmented_once_and_its_tokens_are_not_shared(monkeypatch):
    from shoprec.encoders.lexical import LexicalEncoder

    encoder = LexicalEncoder()
    calls = []
    real = encoder._segment
    monkeypatch.setattr(encoder, "_segment", lambda text, mode: calls.append(text) or real(text, mode))
    first = encoder.tokens("夏季纯棉T恤男款")
    first.append("mutated")  # a caller's list is its own
    assert encoder.tokens("夏季纯棉T恤男款") == ["夏季", "纯棉", "t恤", "男款"]
    assert len(calls) == 1
    encoder.tokens("夏季纯棉T恤男款", "exact")  # another mode is another segmentation
    assert len(calls) == 2
