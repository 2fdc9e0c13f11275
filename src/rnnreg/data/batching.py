"""Cutting a token stream into parallel columns and time-major training windows.

The stream is cut into ``B`` contiguous pieces laid side by side as the columns of an (N, B)
tensor (Zaremba et al. 2014; pytorch/examples ``batchify``): column b continues across windows, so
the hidden state carried from one window to the next belongs to the same text.
"""

from __future__ import annotations

from torch import Tensor


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def batchify(data: Tensor, batch_size: int) -> Tensor:
    """Lay ``data`` out as ``batch_size`` columns.

    Args:
        data: (N,) token ids.
        batch_size: B, the number of parallel streams.

    Returns:
        (N // B, B): column b holds ``data[b * (N // B) : (b + 1) * (N // B)]``. The last
        ``N % B`` tokens are dropped, as in the references.
    """
    _positive_int("batch_size", batch_size)
    if data.dim() != 1:
        raise ValueError(f"data must be 1-D (N,), got shape {tuple(data.shape)}")
    rows = data.numel() // batch_size
    if rows < 2:
        raise ValueError(f"data of {data.numel()} tokens is too short for batch_size={batch_size} "
                         f"(each column needs at least 2 tokens: an input and its target)")
    # (rows * B,) -> (B, rows): one contiguous piece per row; .t() -> (rows, B) time-major
    return data[: rows * batch_size].view(batch_size, rows).t().contiguous()


def shard_columns(batched: Tensor, rank: int, world_size: int) -> Tensor:
    """The columns of ``batched`` that process ``rank`` of ``world_size`` trains on.

    Each rank gets a contiguous block of columns. When B is not a multiple of ``world_size`` the
    first ``B % world_size`` ranks get one column more (as ``numpy.array_split``). Distributed
    data parallel averages gradients over ranks, so the tokens of the smaller ranks then weigh
    slightly more; choose B divisible by ``world_size`` to avoid it.

    Args:
        batched: (N, B) from :func:`batchify`.
        rank: this process, in [0, world_size).
        world_size: the number of processes; at most B.

    Returns:
        (N, B_r), a contiguous copy; concatenating the shards of all ranks along dim 1 gives back
        ``batched``.
    """
    _positive_int("world_size", world_size)
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ValueError(f"rank must be an int in [0, {world_size}), got {rank!r}")
    if batched.dim() != 2:
        raise ValueError(f"batched must be 2-D (N, B), got shape {tuple(batched.shape)}")
    columns = batched.size(1)
    if columns < world_size:
        raise ValueError(f"batched has {columns} columns, fewer than world_size={world_size}: "
                         f"some ranks would get no data; raise the batch size")
    share, extra = divmod(columns, world_size)
    start = rank * share + min(rank, extra)
    stop = start + share + (1 if rank < extra else 0)
    return batched[:, start:stop].contiguous()


def get_batch(source: Tensor, i: int, seq_len: int) -> tuple[Tensor, Tensor]:
    """The window of ``source`` starting at row ``i`` and its next-token targets.

    Args:
        source: (N, B) from :func:`batchify`.
        i: the first row, in [0, N - 1).
        seq_len: the wanted length; the last window of an epoch is shorter.

    Returns:
        ``(x, y)``, both (T, B) with T = min(seq_len, N - 1 - i): ``x = source[i : i + T]`` and
        ``y = source[i + 1 : i + 1 + T]``, the token after each input.
    """
    _positive_int("seq_len", seq_len)
    if source.dim() != 2:
        raise ValueError(f"source must be 2-D (N, B), got shape {tuple(source.shape)}")
    rows = source.size(0)
    if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < rows - 1:
        raise ValueError(f"i must be an int in [0, {rows - 1}) for a source of {rows} rows, got {i!r}")
    steps = min(seq_len, rows - 1 - i)
    return source[i : i + steps], source[i + 1 : i + 1 + steps]
