"""Test oracle: zihangdai/xlnet's sample building, transcribed statement by statement into NumPy.

Only for the tests. Every function follows one original function of ``data_utils.py`` in the same
statement order, with the same random calls; what changes: module-level ``random`` becomes the
argument ``py_random`` (a random.Random), ``np.random`` becomes ``np_random`` (a RandomState),
``FLAGS.*`` become arguments, ``sp.IdToPiece`` + ``_is_start_piece`` become ``is_start_piece(id)``,
TF ops become NumPy ops (``tf.random_shuffle`` -> ``np_random.shuffle``, which also permutes the
first axis), logging is dropped, and records are yielded instead of written to TFRecord files.
"""
import numpy as np


def lines_to_stream(lines, use_eod, eod_id):
    """data_utils.py, ``_create_data``: the per-line loop that builds input_data and sent_ids (one file)."""
    input_data, sent_ids = [], []
    sent_id = True
    for line in lines:
        if len(line) == 0:
            if use_eod:
                sent_id = not sent_id
                cur_sent = [eod_id]
            else:
                continue
        else:
            cur_sent = list(line)
        input_data.extend(cur_sent)
        sent_ids.extend([sent_id] * len(cur_sent))
        sent_id = not sent_id
    return np.array(input_data, dtype=np.int64), np.array(sent_ids, dtype=bool)


def batchify(data, bsz_per_host, sent_ids=None):
    """data_utils.py, ``batchify``."""
    num_step = len(data) // bsz_per_host
    data = data[:bsz_per_host * num_step]
    data = data.reshape(bsz_per_host, num_step)
    if sent_ids is not None:
        sent_ids = sent_ids[:bsz_per_host * num_step]
        sent_ids = sent_ids.reshape(bsz_per_host, num_step)
    if sent_ids is not None:
        return data, sent_ids
    return data


def split_a_and_b(data, sent_ids, begin_idx, tot_len, py_random, extend_target=False):
    """data_utils.py, ``_split_a_and_b``."""
    data_len = data.shape[0]
    if begin_idx + tot_len >= data_len:
        return None

    end_idx = begin_idx + 1
    cut_points = []
    while end_idx < data_len:
        if sent_ids[end_idx] != sent_ids[end_idx - 1]:
            if end_idx - begin_idx >= tot_len:
                break
            cut_points.append(end_idx)
        end_idx += 1

    a_begin = begin_idx
    if len(cut_points) == 0 or py_random.random() < 0.5:
        label = 0
        if len(cut_points) == 0:
            a_end = end_idx
        else:
            a_end = py_random.choice(cut_points)

        b_len = max(1, tot_len - (a_end - a_begin))
        b_begin = py_random.randint(0, data_len - 1 - b_len)
        b_end = b_begin + b_len
        while b_begin > 0 and sent_ids[b_begin - 1] == sent_ids[b_begin]:
            b_begin -= 1
        while b_end < data_len - 1 and sent_ids[b_end - 1] == sent_ids[b_end]:
            b_end += 1

        new_begin = a_end
    else:
        label = 1
        a_end = py_random.choice(cut_points)
        b_begin = a_end
        b_end = end_idx

        new_begin = b_end

    while a_end - a_begin + b_end - b_begin > tot_len:
        if a_end - a_begin > b_end - b_begin:
            a_end -= 1
        else:
            b_end -= 1

    ret = [data[a_begin: a_end], data[b_begin: b_end], label, new_begin]

    if extend_target:
        if a_end >= data_len or b_end >= data_len:
            return None
        a_target = data[a_begin + 1: a_end + 1]
        b_target = data[b_begin: b_end + 1]
        ret.extend([a_target, b_target])

    return ret


def sample_mask(is_start_piece, seg, mask_alpha, mask_beta, np_random, reverse=False, max_gram=5,
                goal_num_predict=None):
    """data_utils.py, ``_sample_mask``."""
    seg_len = len(seg)
    mask = np.array([False] * seg_len, dtype=bool)

    num_predict = 0

    ngrams = np.arange(1, max_gram + 1, dtype=np.int64)
    pvals = 1. / np.arange(1, max_gram + 1)
    pvals /= pvals.sum(keepdims=True)

    if reverse:
        seg = np.flip(seg, 0)

    cur_len = 0
    while cur_len < seg_len:
        if goal_num_predict is not None and num_predict >= goal_num_predict:
            break

        n = np_random.choice(ngrams, p=pvals)
        if goal_num_predict is not None:
            n = min(n, goal_num_predict - num_predict)
        ctx_size = (n * mask_alpha) // mask_beta
        l_ctx = np_random.choice(ctx_size)
        r_ctx = ctx_size - l_ctx

        beg = cur_len + l_ctx
        while beg < seg_len and not is_start_piece(seg[beg].item()):
            beg += 1
        if beg >= seg_len:
            break

        end = beg + 1
        cnt_ngram = 1
        while end < seg_len:
            if is_start_piece(seg[beg].item()):
                cnt_ngram += 1
                if cnt_ngram > n:
                    break
            end += 1
        if end >= seg_len:
            break

        mask[beg:end] = True
        num_predict += end - beg

        cur_len = end + r_ctx

    while goal_num_predict is not None and num_predict < goal_num_predict:
        i = np_random.randint(seg_len)
        if not mask[i]:
            mask[i] = True
            num_predict += 1

    if reverse:
        mask = np.flip(mask, 0)

    return mask


def create_tfrecords(data, bsz_per_host, seq_len, bi_data, reuse_len, num_predict, mask_alpha, mask_beta,
                     sep_id, cls_id, is_start_piece, py_random, np_random, num_core=1, max_gram=5):
    """data_utils.py, ``create_tfrecords``: yields each batch's list of features where the original writes them."""
    data, sent_ids = data[0], data[1]

    bsz_per_core = bsz_per_host // num_core

    if bi_data:
        assert bsz_per_host % (2 * num_core) == 0
        fwd_data, fwd_sent_ids = batchify(data, bsz_per_host // 2, sent_ids)

        fwd_data = fwd_data.reshape(num_core, 1, bsz_per_core // 2, -1)
        fwd_sent_ids = fwd_sent_ids.reshape(num_core, 1, bsz_per_core // 2, -1)

        bwd_data = fwd_data[:, :, :, ::-1]
        bwd_sent_ids = fwd_sent_ids[:, :, :, ::-1]

        data = np.concatenate([fwd_data, bwd_data], 1).reshape(bsz_per_host, -1)
        sent_ids = np.concatenate([fwd_sent_ids, bwd_sent_ids], 1).reshape(bsz_per_host, -1)
    else:
        data, sent_ids = batchify(data, bsz_per_host, sent_ids)

    assert reuse_len < seq_len - 3

    data_len = data.shape[1]
    sep_array = np.array([sep_id], dtype=np.int64)
    cls_array = np.array([cls_id], dtype=np.int64)

    i = 0
    while i + seq_len <= data_len:
        all_ok = True
        features = []
        for idx in range(bsz_per_host):
            inp = data[idx, i: i + reuse_len]
            tgt = data[idx, i + 1: i + reuse_len + 1]

            results = split_a_and_b(data[idx], sent_ids[idx], begin_idx=i + reuse_len,
                                    tot_len=seq_len - reuse_len - 3, py_random=py_random, extend_target=True)
            if results is None:
                all_ok = False
                break

            (a_data, b_data, label, _, a_target, b_target) = tuple(results)

            reverse = bi_data and (idx // (bsz_per_core // 2)) % 2 == 1
            if num_predict is None:
                num_predict_0 = num_predict_1 = None
            else:
                num_predict_1 = num_predict // 2
                num_predict_0 = num_predict - num_predict_1
            mask_0 = sample_mask(is_start_piece, inp, mask_alpha, mask_beta, np_random, reverse=reverse,
                                 max_gram=max_gram, goal_num_predict=num_predict_0)
            mask_1 = sample_mask(is_start_piece, np.concatenate([a_data, sep_array, b_data, sep_array, cls_array]),
                                 mask_alpha, mask_beta, np_random, reverse=reverse, max_gram=max_gram,
                                 goal_num_predict=num_predict_1)

            cat_data = np.concatenate([inp, a_data, sep_array, b_data, sep_array, cls_array])
            seg_id = ([0] * (reuse_len + a_data.shape[0]) + [0] + [1] * b_data.shape[0] + [1] + [2])
            assert cat_data.shape[0] == seq_len
            # (the original also asserts mask_0 and mask_1 to be seq_len // 2 long: reuse_len == seq_len / 2)

            tgt = np.concatenate([tgt, a_target, b_target, cls_array, cls_array])
            assert tgt.shape[0] == seq_len

            is_masked = np.concatenate([mask_0, mask_1], 0)
            if num_predict is not None:
                assert np.sum(is_masked) == num_predict

            feature = {
                "input": cat_data,
                "is_masked": is_masked.astype(np.int64),
                "target": tgt,
                "seg_id": np.array(seg_id, dtype=np.int64),
                "label": np.array([label], dtype=np.int64),
            }
            features.append(feature)

        if all_ok:
            assert len(features) == bsz_per_host
            yield features
        else:
            break

        i += reuse_len


def local_perm(inputs, targets, is_masked, perm_size, seq_len, sep_id, cls_id, np_random):
    """data_utils.py, ``_local_perm``."""
    index = np.arange(seq_len, dtype=np.int64)
    index = np.transpose(np.reshape(index, [-1, perm_size]))
    index = index.copy()
    np_random.shuffle(index)
    index = np.reshape(np.transpose(index), [-1])

    non_func_tokens = np.logical_not(np.logical_or(np.equal(inputs, sep_id), np.equal(inputs, cls_id)))

    non_mask_tokens = np.logical_and(np.logical_not(is_masked), non_func_tokens)
    masked_or_func_tokens = np.logical_not(non_mask_tokens)

    smallest_index = -np.ones([seq_len], dtype=np.int64)
    rev_index = np.where(non_mask_tokens, smallest_index, index)

    target_tokens = np.logical_and(masked_or_func_tokens, non_func_tokens)
    target_mask = target_tokens.astype(np.float32)

    self_rev_index = np.where(target_tokens, rev_index, rev_index + 1)

    perm_mask = np.logical_and(self_rev_index[:, None] <= rev_index[None, :], masked_or_func_tokens)
    perm_mask = perm_mask.astype(np.float32)

    new_targets = np.concatenate([inputs[0: 1], targets[: -1]], axis=0)

    inputs_k = inputs

    inputs_q = target_mask

    return perm_mask, new_targets, target_mask, inputs_k, inputs_q


def parser(example, seq_len, reuse_len, perm_size, num_predict, sep_id, cls_id, np_random):
    """data_utils.py, ``get_dataset``'s ``parser`` (the ``num_predict is not None`` branch), from a feature dict."""
    inputs = example["input"]
    target = example["target"]
    is_masked = example["is_masked"].astype(bool)

    non_reuse_len = seq_len - reuse_len
    assert perm_size <= reuse_len and perm_size <= non_reuse_len

    perm_mask_0, target_0, target_mask_0, input_k_0, input_q_0 = local_perm(
        inputs[:reuse_len], target[:reuse_len], is_masked[:reuse_len], perm_size, reuse_len, sep_id, cls_id,
        np_random)

    perm_mask_1, target_1, target_mask_1, input_k_1, input_q_1 = local_perm(
        inputs[reuse_len:], target[reuse_len:], is_masked[reuse_len:], perm_size, non_reuse_len, sep_id, cls_id,
        np_random)

    perm_mask_0 = np.concatenate([perm_mask_0, np.ones([reuse_len, non_reuse_len])], axis=1)
    perm_mask_1 = np.concatenate([np.zeros([non_reuse_len, reuse_len]), perm_mask_1], axis=1)
    perm_mask = np.concatenate([perm_mask_0, perm_mask_1], axis=0)
    target = np.concatenate([target_0, target_1], axis=0)
    target_mask = np.concatenate([target_mask_0, target_mask_1], axis=0)
    input_k = np.concatenate([input_k_0, input_k_1], axis=0)
    input_q = np.concatenate([input_q_0, input_q_1], axis=0)

    out = {"seg_id": example["seg_id"], "label": example["label"]}
    indices = np.arange(seq_len, dtype=np.int64)
    bool_target_mask = target_mask.astype(bool)
    indices = indices[bool_target_mask]

    actual_num_predict = indices.shape[0]
    pad_len = num_predict - actual_num_predict

    target_mapping = np.eye(seq_len, dtype=np.float32)[indices]
    paddings = np.zeros([pad_len, seq_len], dtype=target_mapping.dtype)
    target_mapping = np.concatenate([target_mapping, paddings], axis=0)
    out["target_mapping"] = np.reshape(target_mapping, [num_predict, seq_len])

    target = target[bool_target_mask]
    paddings = np.zeros([pad_len], dtype=target.dtype)
    target = np.concatenate([target, paddings], axis=0)
    out["target"] = np.reshape(target, [num_predict])

    target_mask = np.concatenate([np.ones([actual_num_predict], dtype=np.float32),
                                  np.zeros([pad_len], dtype=np.float32)], axis=0)
    out["target_mask"] = np.reshape(target_mask, [num_predict])

    out["perm_mask"] = np.reshape(perm_mask, [seq_len, seq_len]).astype(np.float32)
    out["input_k"] = np.reshape(input_k, [seq_len])
    out["input_q"] = np.reshape(input_q, [seq_len])
    return out
