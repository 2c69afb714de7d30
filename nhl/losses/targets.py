"""Class targets for the center-based objectives, CSQ and DPN (docs/method.md §2).

Two ways to give several code lengths their targets:

* **independent** (the public reference code): each length draws its own centers / targets.
  The 8-bit center of a class is then unrelated to the first 8 bits of its 16-bit center, so the
  nested layer asks the shared prefix to move towards two contradicting targets.
* **nested** (this package's default, see :func:`nhl.losses.build_nested`): targets are built
  once for the longest length L_K and every shorter length uses their prefix, so the whole
  code and each of its prefixes agree on where a class should go.

Everything random here takes an explicit ``torch.Generator``; the global RNG is never touched.
All targets are float tensors of +1/-1 with one row per class.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..validation import check_bit_list, check_positive_int

N_TRIALS = 20  # candidate draws for random balanced centers; the best-separated one is kept


def make_generator(seed: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``seed`` (targets are small: built on the CPU)."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    return torch.Generator().manual_seed(seed)


def _gen(generator: torch.Generator | None) -> torch.Generator:
    return make_generator(0) if generator is None else generator


def is_power_of_two(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


def hadamard(n: int) -> torch.Tensor:
    """Sylvester Hadamard matrix of order ``n`` (a power of two), float +1/-1.

    H_1 = [1], H_2n = [[H_n, H_n], [H_n, -H_n]], so H[i, j] = (-1)^popcount(i & j). In particular
    the first L columns of row i of H_n equal row (i mod L) of H_L for any power of two L <= n:
    the prefix of a Sylvester row is again a Sylvester row.
    """
    check_positive_int(n, "n")
    if not is_power_of_two(n):
        raise ValueError(f"the Sylvester construction needs a power of two, got n={n}")
    h = torch.ones(1, 1)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h


def hamming_matrix(codes: torch.Tensor) -> torch.Tensor:
    """Pairwise Hamming distances (N x N, long) of +1/-1 rows: (L - <a, b>) / 2."""
    codes = codes.float()
    return ((codes.shape[1] - codes @ codes.T) / 2).round().long()


def min_pairwise_hamming(codes: torch.Tensor) -> int:
    """Smallest Hamming distance between two different rows (0 when two rows coincide)."""
    n = codes.shape[0]
    if n < 2:
        raise ValueError("min_pairwise_hamming needs at least two rows")
    d = hamming_matrix(codes)
    off = ~torch.eye(n, dtype=torch.bool)
    return int(d[off].min())


def _balanced_rows(
    n_rows: int, bits: int, n_minus: int, generator: torch.Generator
) -> torch.Tensor:
    """n_rows random +1/-1 rows of length ``bits`` with exactly ``n_minus`` entries -1 each."""
    ranks = torch.rand(n_rows, bits, generator=generator).argsort(dim=1).argsort(dim=1)
    return torch.where(ranks < n_minus, -1.0, 1.0)


def _best_separated(
    n_classes: int, bits: int, generator: torch.Generator, prefix: torch.Tensor | None = None
) -> torch.Tensor:
    """Draw N_TRIALS balanced blocks (bits // 2 minus ones per row) and keep the one whose
    codes (``prefix`` followed by the block) have the largest minimum, then mean, pairwise
    Hamming distance (the selection rule of CSQ's random centers)."""
    best, best_key = None, None
    for _ in range(N_TRIALS):
        block = _balanced_rows(n_classes, bits, bits // 2, generator)
        full = block if prefix is None else torch.cat([prefix, block], 1)
        if n_classes < 2:
            return block
        d = hamming_matrix(full)[~torch.eye(n_classes, dtype=torch.bool)].float()
        key = (float(d.min()), float(d.mean()))
        if best_key is None or key > best_key:
            best, best_key = block, key
    return best


def random_balanced_centers(
    n_classes: int, bits: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """C random centers with bits // 2 entries -1 each, best separated of N_TRIALS draws."""
    check_positive_int(n_classes, "n_classes")
    check_positive_int(bits, "bits")
    return _best_separated(n_classes, bits, _gen(generator))


def csq_centers(
    n_classes: int, bits: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """CSQ hash centers for one length, as the public code builds them (docs/method.md §2).

    When ``bits`` is a power of two and 2 * bits >= C: the first C rows of [H; -H] (Sylvester
    H of order ``bits``), so any two centers are at Hamming distance bits / 2 or bits.
    Otherwise (too many classes, or a length with no Sylvester matrix): random balanced centers,
    best separated of N_TRIALS draws.
    """
    check_positive_int(n_classes, "n_classes")
    check_positive_int(bits, "bits")
    if is_power_of_two(bits) and 2 * bits >= n_classes:
        h = hadamard(bits)
        return torch.cat([h, -h], 0)[:n_classes].clone()
    return random_balanced_centers(n_classes, bits, generator)


def _thue_morse_signs(n: int) -> torch.Tensor:
    """(-1)^popcount(c) for c = 0..n-1."""
    c = torch.arange(n)
    parity = torch.zeros(n, dtype=torch.long)
    while bool((c > 0).any()):
        parity ^= c & 1
        c = c >> 1
    return 1.0 - 2.0 * parity.float()


#: Constructions of nested CSQ centres (:func:`nested_csq_centers`).
CENTER_DESIGNS = ("auto", "hadamard", "sylvester", "random")


def _gf2_rank(rows: list[int]) -> int:
    """Rank over GF(2) of integers read as bit vectors."""
    basis: list[int] = []
    for r in rows:
        for b in basis:
            r = min(r, r ^ b)
        if r:
            basis.append(r)
    return len(basis)


def spread_hadamard_rows(n_classes: int, longest: int) -> torch.Tensor:
    """Sylvester row index per class for :func:`nested_csq_centers` ``design="hadamard"``.

    Class c gets row ``r_c = c + 2^m h_c`` with 2^m the smallest power of two >= C, so
    ``r_c mod L = c mod L`` for every power-of-two prefix L < 2^m (the short prefixes are those
    of :func:`sylvester` rows 0..C-1) and the ``r_c mod L`` are distinct for L >= C. The high
    part ``h_c`` (in ``[0, L_K / 2^m)``) is chosen greedily, class by class, to raise the GF(2)
    rank of the row indices: column j of the centre matrix is then
    ``(-1)^(popcount(r_c & j))``, and the number of distinct columns (distinct class splits)
    is 2^rank instead of the 2^m of rows 0..C-1.
    """
    m = max(1, (n_classes - 1).bit_length())
    span = max(1, longest >> m)
    rows: list[int] = []
    for c in range(n_classes):
        if c >= (1 << m) or span == 1:
            rows.append(c % longest)
            continue
        best = max(range(span), key=lambda h: (_gf2_rank([*rows, c + (h << m)]), -h))
        rows.append(c + (best << m))
    return torch.tensor(rows, dtype=torch.long)


def distinct_splits(centers: torch.Tensor) -> int:
    """How many different ways the columns (bits) of a centre matrix split the classes in two.

    A column and its negation split the classes the same way and count once. Bits that repeat
    an earlier split add no information about the classes.
    """
    cols = centers.T.float()
    cols = cols * torch.where(cols[:, :1] < 0, -1.0, 1.0)  # first class on the + side
    return int(torch.unique(cols, dim=0).shape[0])


def nested_csq_centers(
    n_classes: int,
    bit_list: Sequence[int],
    generator: torch.Generator | None = None,
    design: str = "auto",
) -> torch.Tensor:
    """CSQ centres for the longest length whose prefixes serve every shorter length.

    Returns a (C x L_K) tensor; the centres for length L_k are its first L_k columns.

    Designs (``design``):

    * ``"hadamard"``: class c gets ``(-1)^popcount(c) * H[r_c]`` with H the Sylvester matrix
      of order L_K and ``r_c`` from :func:`spread_hadamard_rows`. For each power-of-two prefix
      length L:

      - L >= C: all centres orthogonal (distance L / 2), as good as the public per-length
        construction;
      - L < C <= 2L: classes c and c + L share a row with opposite signs, so the centres are
        distinct, at distance L / 2 or L (antipodal), like [H_L; -H_L];
      - 2L < C (prefix too short for C classes): only 2L distinct +-rows of H_L exist, so
        classes share centres; the Thue-Morse signs spread them, no centre serves more than
        ceil(C / 2L) classes. Longer prefixes still separate them.

      The rows are chosen so that bits beyond the first 2^m (2^m >= C) are not repetitions of
      earlier bits: with C = 10 and L_K = 128 the 128 columns split the classes in 128
      different ways instead of 16 (:func:`distinct_splits`).
    * ``"sylvester"``: the same with ``r_c = c`` (rows 0..C-1, the public code's rows). For
      C <= 16 every bit after the 16th repeats one of the first 16; kept for comparison.
    * ``"random"``: nested random balanced blocks: bits (L_{k-1}, L_k] of each class hold
      floor(block / 2) entries -1, so every prefix stays balanced; each block is the best
      separated of N_TRIALS draws given the bits before it. Short prefixes then give every
      class its own (close) centre even when 2L < C, instead of shared ones.
    * ``"auto"`` (default): ``"hadamard"`` when L_K is a power of two and 2 * L_K >= C,
      otherwise ``"random"`` (also used for lengths with no Sylvester matrix).

    Prefix lengths that are not powers of two get no distance guarantee from the Hadamard
    designs (their prefixes are not Hadamard rows).
    """
    check_positive_int(n_classes, "n_classes")
    bits = check_bit_list(bit_list)
    if design not in CENTER_DESIGNS:
        raise ValueError(f"unknown centre design {design!r}; valid: {', '.join(CENTER_DESIGNS)}")
    longest = bits[-1]
    hadamard_ok = is_power_of_two(longest) and 2 * longest >= n_classes
    if design == "auto":
        design = "hadamard" if hadamard_ok else "random"
    if design in ("hadamard", "sylvester"):
        if not hadamard_ok:
            raise ValueError(
                f"design={design!r} needs a power-of-two longest length with 2 * L_K >= C; got "
                f"L_K = {longest} for {n_classes} classes: use design='random'"
            )
        if design == "sylvester":
            rows = torch.arange(n_classes) % longest
        else:
            rows = spread_hadamard_rows(n_classes, longest)
        return _thue_morse_signs(n_classes)[:, None] * hadamard(longest)[rows]
    gen = _gen(generator)
    out = torch.empty(n_classes, 0)
    start = 0
    for stop in bits:
        out = torch.cat([out, _best_separated(n_classes, stop - start, gen, prefix=out)], 1)
        start = stop
    return out


def dpn_targets(
    n_classes: int, bits: int, p: float = 0.5, generator: torch.Generator | None = None
) -> torch.Tensor:
    """DPN's random per-class targets for one length: +1 everywhere except int(p * bits)
    randomly placed -1 entries per class (docs/method.md §2)."""
    check_positive_int(n_classes, "n_classes")
    check_positive_int(bits, "bits")
    check_p(p)
    return _balanced_rows(n_classes, bits, int(p * bits), _gen(generator))


def nested_dpn_targets(
    n_classes: int,
    bit_list: Sequence[int],
    p: float = 0.5,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """DPN targets for the longest length whose prefixes serve every shorter length (C x L_K).

    Each new block of bits (L_{k-1}, L_k] gets its own int(p * block size) random -1 entries per
    class, so every prefix has the intended share of -1 (exactly L_k / 2 for p = 0.5 and
    power-of-two lengths), instead of the prefix of one long balanced vector, which need not be.
    """
    check_positive_int(n_classes, "n_classes")
    bits = check_bit_list(bit_list)
    check_p(p)
    gen = _gen(generator)
    blocks, start = [], 0
    for stop in bits:
        blocks.append(_balanced_rows(n_classes, stop - start, int(p * (stop - start)), gen))
        start = stop
    return torch.cat(blocks, 1)


def random_sign_vector(bits: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random +1/-1 vector of length ``bits``: the fixed tie-breaker for multi-label targets."""
    check_positive_int(bits, "bits")
    draw = torch.randint(0, 2, (bits,), generator=_gen(generator))
    return 2.0 * draw.float() - 1.0


def label_targets(y: torch.Tensor, centers: torch.Tensor, tie_break: torch.Tensor) -> torch.Tensor:
    """Per-sample targets: sign of the sum of the centers of the sample's labels (B x bits).

    For one-hot labels this is the class center. Where the sum is 0 (two labels disagree on a
    bit, or a sample has no label) the bit is taken from the fixed vector ``tie_break``.
    """
    total = y.to(centers.dtype) @ centers
    return torch.where(total == 0, tie_break.expand_as(total), torch.sign(total))


def concat_label_targets(
    y: torch.Tensor, centers: Sequence[torch.Tensor], tie_breaks: Sequence[torch.Tensor]
) -> torch.Tensor:
    """:func:`label_targets` of K lengths side by side, (B, sum_k L_k), in one matmul."""
    C = torch.cat([c.to(y) for c in centers], dim=1)
    tie = torch.cat([t.to(y) for t in tie_breaks])
    total = y.to(C.dtype) @ C
    return torch.where(total == 0, tie.expand_as(total), torch.sign(total))


def check_p(p: float) -> None:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"p (share of -1 entries in a DPN target) must be in [0, 1], got {p!r}")
