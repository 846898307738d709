//! A port of Go's `sort.SliceStable` (insertion sort over blocks of 20, then
//! SymMerge; `sort/zsortfunc.go`).
//!
//! Upstream's `normalizeSliceOrder` sorts with a comparator that is not a strict
//! weak ordering (it answers "less" whenever either element is missing from the
//! order list), so the exact algorithm decides the result. Rust's own stable sort
//! would order such inputs differently; this one swaps exactly as Go does.

/// Sorts `data` stably with `less`, performing the same comparisons and swaps as
/// Go's `sort.SliceStable`.
pub(super) fn slice_stable<T, F>(data: &mut [T], mut less: F)
where
    F: FnMut(&T, &T) -> bool,
{
    let n = data.len();
    let mut block_size = 20;
    let (mut a, mut b) = (0, block_size);
    while b <= n {
        insertion_sort(data, a, b, &mut less);
        a = b;
        b += block_size;
    }
    insertion_sort(data, a, n, &mut less);

    while block_size < n {
        a = 0;
        b = 2 * block_size;
        while b <= n {
            sym_merge(data, a, a + block_size, b, &mut less);
            a = b;
            b += 2 * block_size;
        }
        let m = a + block_size;
        if m < n {
            sym_merge(data, a, m, n, &mut less);
        }
        block_size *= 2;
    }
}

fn insertion_sort<T, F>(data: &mut [T], a: usize, b: usize, less: &mut F)
where
    F: FnMut(&T, &T) -> bool,
{
    for i in (a + 1)..b {
        let mut j = i;
        while j > a && less(&data[j], &data[j - 1]) {
            data.swap(j, j - 1);
            j -= 1;
        }
    }
}

/// Merges the sorted runs `data[a..m]` and `data[m..b]` (requires `a < m < b`).
fn sym_merge<T, F>(data: &mut [T], a: usize, m: usize, b: usize, less: &mut F)
where
    F: FnMut(&T, &T) -> bool,
{
    if m - a == 1 {
        // Lowest i in [m, b) with data[i] >= data[a]; then move data[a] before it.
        let (mut i, mut j) = (m, b);
        while i < j {
            let h = (i + j) / 2;
            if less(&data[h], &data[a]) {
                i = h + 1;
            } else {
                j = h;
            }
        }
        for k in a..(i - 1) {
            data.swap(k, k + 1);
        }
        return;
    }
    if b - m == 1 {
        // Lowest i in [a, m) with data[i] > data[m]; then move data[m] to it.
        let (mut i, mut j) = (a, m);
        while i < j {
            let h = (i + j) / 2;
            if !less(&data[m], &data[h]) {
                i = h + 1;
            } else {
                j = h;
            }
        }
        let mut k = m;
        while k > i {
            data.swap(k, k - 1);
            k -= 1;
        }
        return;
    }

    let mid = (a + b) / 2;
    let n = mid + m;
    let (mut start, mut r) = if m > mid { (n - b, mid) } else { (a, m) };
    let p = n - 1;
    while start < r {
        let c = (start + r) / 2;
        if !less(&data[p - c], &data[c]) {
            start = c + 1;
        } else {
            r = c;
        }
    }

    let end = n - start;
    if start < m && m < end {
        rotate(data, start, m, end);
    }
    if a < start && start < mid {
        sym_merge(data, a, start, mid, less);
    }
    if mid < end && end < b {
        sym_merge(data, mid, end, b, less);
    }
}

/// Rotates `data[a..b]` so that `data[m..b]` comes first (block swaps as Go does).
fn rotate<T>(data: &mut [T], a: usize, m: usize, b: usize) {
    let mut i = m - a;
    let mut j = b - m;
    while i != j {
        if i > j {
            swap_range(data, m - i, m, j);
            i -= j;
        } else {
            swap_range(data, m - i, m + j - i, i);
            j -= i;
        }
    }
    swap_range(data, m - i, m, i);
}

fn swap_range<T>(data: &mut [T], a: usize, b: usize, n: usize) {
    for i in 0..n {
        data.swap(a + i, b + i);
    }
}

#[cfg(test)]
mod tests {
    use super::slice_stable;

    /// With a consistent comparator the result must equal any stable sort.
    #[test]
    fn strategic_gosort_matches_std_stable_sort() {
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        for len in [0usize, 1, 2, 5, 19, 20, 21, 39, 40, 41, 64, 100, 257] {
            let mut v: Vec<(u64, usize)> = (0..len)
                .map(|i| {
                    seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                    ((seed >> 33) % 7, i)
                })
                .collect();
            let mut expected = v.clone();
            expected.sort_by_key(|e| e.0);
            slice_stable(&mut v, |x, y| x.0 < y.0);
            assert_eq!(v, expected, "len {len}");
        }
    }

    /// Go's comparator in normalizeSliceOrder answers `true` when an element is
    /// not in the order list; insertion sort then moves such elements forward.
    #[test]
    fn strategic_gosort_inconsistent_comparator_like_go() {
        // -1 = not found in the order list.
        let mut v = vec![(-1i64, 'a'), (1, 'b'), (0, 'c')];
        slice_stable(&mut v, |x, y| if x.0 >= 0 && y.0 >= 0 { x.0 < y.0 } else { true });
        // i=1: less(b, a) -> a not found -> true -> swap: [b, a, c]
        // i=2: less(c, a) -> true -> swap: [b, c, a]; less(c, b) -> 0<1 -> swap: [c, b, a]
        assert_eq!(v, vec![(0, 'c'), (1, 'b'), (-1, 'a')]);
    }
}
