"""The hand-written parts of docs/benchmarks.md: the method and what was tried (prose)."""

METHOD = """\
## Method

* One process runs both frameworks with the same thread count: `torch.set_num_threads(n)`,
  threadpoolctl limits for NumPy's BLAS (and any OpenMP pool), `numba.set_num_threads(n)`.
* Every case runs 2 warm-up calls of each framework, then 21 rounds (11 for the epoch) that
  time gammabeta and PyTorch alternately (the order flips every round). Each timing covers
  enough back-to-back calls of that function to last ≥ 50 ms (≥ 200 ms for the epoch).
  Reported: the median time per call and the interquartile range (IQR) of the rounds.
* BatchNorm: float32, γ ~ N(1, 0.2²), β ~ N(0, 1), input N(1, 2²). *forward (train)* runs with
  gradients enabled in both (gammabeta keeps its backward cache, PyTorch builds its graph);
  *forward (eval)* runs under `no_grad` in both; *forward+backward* also computes dx, dγ, dβ.
* Training step: `zero_grad`, forward, cross-entropy, backward, AdamW step (weight decay 0.05
  on weights, none on biases/γ/β, as `gammabeta train` does); the PyTorch model is built layer
  for layer from the gammabeta model and loads its state dict, so both start from the same
  weights and see the same batch.
* Epoch: one epoch of the default `gammabeta train` (MLP 40-256-256-10, BN, ReLU, dropout 0.2,
  AdamW + one-cycle, batch 100, the seeded shuffling DataLoader) followed by the test-set
  evaluation, through `gammabeta.train.train_epoch` and `evaluate`; the PyTorch loop is the
  same (same batches, `torch.optim.AdamW`, `OneCycleLR`, `loss.item()` per step).
* Memory floor: the bytes a case must move (column *bytes*, counted as below) divided by the
  copy bandwidth measured in the same run (256 MiB `np.copyto`, bytes read + bytes written per
  second, the higher of the measurements before and after the cases). BatchNorm:
  forward 2 × tensor (read x, write y), forward+backward 5 × tensor (+ read x, read dy,
  write dx; the reductions fused). Training steps: 5 × the activations (written and read in
  forward; read, gradient written and read in backward) + 10 × the parameters (forward read,
  backward read and gradient write, AdamW reads p, g, m, v and writes p, m, v) + the input.
  Those are compute-bound (GEMMs): their floor ratio says how far from memory-bound they are.
  The bandwidth is DRAM's: a 16.8 MB tensor that stays in the 32 MB L3 between calls can beat
  the floor (ratios below 1).
* Peak memory: each framework in a fresh subprocess (`benchmarks/memory.py`) started with
  `MALLOC_MMAP_THRESHOLD_=65536` (every buffer ≥ 64 KiB is its own mapping and is returned on
  free, so RSS follows the live arrays/tensors): model, optimizer, batch and 2 warm-up steps;
  gradients set to None and gammabeta's per-layer caches dropped (PyTorch frees its graph in
  backward); then the kernel's peak-RSS mark is reset (`/proc/self/clear_refs`) and the peak
  (`VmHWM`) over 5 more steps minus the RSS before them is reported: the memory a step needs
  on top of model, optimizer state and data — the same method for both.
* Each timed block starts after 20 ms of idle time, so thread pools that spin-wait after
  their work (PyTorch's OpenMP threads) do not steal a core from the block that follows, and
  then 5 ms of untimed calls of the same function: after the idle time the first calls of
  either framework run 2–10× slower for about a millisecond on this VM (cold vCPU, sleeping
  worker threads), and a timing should measure back-to-back calls as a training loop makes
  them.
"""

TRIED = """\
## What was tried

Measured on this machine (2 cores, PyTorch 2 threads) while other jobs shared it at times:
single figures are medians of alternating rounds, and differences under ~15 % are noise.
"Before" is the code of the commit preceding this work, timed by the same cases.

| change | before | after | kept? |
| --- | --- | --- | --- |
| BatchNorm2d (64, 64, 32, 32) fwd+bwd | 16.4 ms (2.21× PyTorch) | 2.4–3.4 ms (0.40–0.52×) | yes |
| BatchNorm1d (4096, 1024) fwd+bwd | 14.5 ms (3.04×) | 3.3–5.4 ms (0.53–0.94×) | yes |
| MNIST-1D CNN train step | 10.0 ms (1.77×) | 5.4–6.6 ms (0.46–0.65×) | yes |
| MLP 784-1024-1024 train step | 14.6 ms (0.43×) | 12.4–14.3 ms (0.38–0.39×) | yes |
| peak memory MLP-256 / MLP-1024 / CNN step | 3.7 / 23.4 / 9.4 MB | 1.4 / 8.7 / 3.8–3.9 MB | yes |

**BatchNorm, NumPy only.** The old forward made x − shift, x − mean, x̂, x̂·γ, + β and a
float copy: ~8 full passes, and kept x̂ (a second copy of the input) for backward. Now: one
buffer (x − K, then − d, × scale, + β in place), reductions by BLAS (`rows @ ones`, a GEMV,
95 GB/s in cache, against 27 GB/s for `sum(axis=(0, 2))`) and `np.vecdot` (75 GB/s, against
34 GB/s for `einsum`), a reference to x cached instead of x̂. About 1.5× faster than before
(the NumPy-only column), still well above the floor: every NumPy ufunc pass costs ~0.5 ms on
16.8 MB on one core. Processing the batch in cache-sized chunks (per-sample blocks of
128–512 KiB) was tried and did not help (12.0–15.2 ms against 13.3–14.8 unchunked): NumPy's
elementwise ops are no faster on cached data (a broadcast subtract runs at 27 GB/s in L2).

**BatchNorm, Numba (chosen: `numba` from PyPI, no compiler needed).** Four compiled loops per
training step, each streaming the arrays once in memory order (statistics; output; backward
sums; dx), with two-pass statistics per cache-resident block merged by Chan's formula. On
one core these run at 1.0–1.6× the floor (e.g. (64, 64, 32, 32) fwd+bwd ≈ 2.1 ms of kernels,
floor 2.1 ms). Variants measured:

* per-channel blocks ((N, L) slab of one channel, meant to stay in L2 for all passes): 16 ms
  fwd+bwd — the 64 rows of a channel are 256 KiB apart, map to the same cache sets and thrash;
  replaced by batch-order streaming.
* inner loop along L for every shape: 83 µs for the statistics of (100, 32, 40) against 37 µs
  when short rows (L < 64) are processed as flattened C·L rows ("column form").
* float64 accumulation of every element against short sums in the input dtype first: 732 →
  585 µs ((4096, 1024) statistics, one core); also unrolling 4 rows per accumulator update and
  vectorizing the per-block reductions for L = 1: 64.5 → 36 µs for (256, 1024).
* `numba` `parallel=True` (OpenMP): fastest alone on a quiet machine (e.g. (64, 64, 32, 32)
  fwd+bwd 1.76 ms) but its workers spin after each region and starve NumPy's OpenBLAS threads:
  the MLP 784-1024-1024 step took 34.6 ms with it against 14.7 ms without, and 4 × (GEMM +
  kernel) 31.9 ms against 9.6 ms serial; with other jobs on the cores a 2-thread region took
  8–40 ms (PyTorch's too). The `workqueue` layer does not spin but took 0.58 ms for a 1 MB
  forward that runs in 0.09 ms serially; TBB (pip `tbb` 2023) would not load with numba 0.68.
  **Kept in the first round** (the second round below replaced the threads): serial `nogil`
  kernels, and for arrays of 2²¹ elements or more the two reductions
  (statistics, backward sums) split along the batch over persistent worker threads that sleep
  when idle: no interference with BLAS (GEMM + kernel mix 9.11 ms against 9.10 serial),
  fwd+bwd (4096, 1024) 4.10 ms against 4.86 serial, (64, 64, 32, 32) 2.59 against 3.03. The
  passes that write a new array stay on one thread: split, they page-faulted the fresh output
  (13 faults per call) and gained nothing (483 µs against 471 serial; 353 µs into a reused
  buffer).
* Python overhead per BatchNorm call (running statistics, casts, per-channel constants) moved
  into the kernels: forward on (8, 1024) 41 → 21 µs (PyTorch 21 µs).
* Still slower than PyTorch where a single pass dominates (eval, and the forward of the 2-D
  (N, C) cases): PyTorch streams with 2 threads, gammabeta's loop writes y with ordinary stores
  (read-for-ownership) and its extra thread helps little there.

**BatchNorm, second round (single passes and small inputs).** The first round left the
forward-only and (256, 1024) cases at 1.04–1.34× PyTorch. Measured causes and changes:

* Python per call: forward 10.9 → 6.4 µs and backward likewise on a tiny input (one compiled
  call per forward and per backward instead of one per pass; `self._parameters[...]` instead
  of `Module.__getattr__`; memoized compute dtype; a dtype fast path in `is_floating`).
* Column form (N, C): NumPy arrays start 16 bytes past a cache line, so every 64-byte vector
  load straddled two lines: the output pass of (4096, 1024) took 885 µs, 634 µs with the
  row split at its first cache-line boundary and the per-position constants placed like the
  input (row form unaffected). The reductions keep whole rows: splitting them cost more
  than it saved there (13.4 against 12.9 µs in cache), and a first version that walked
  "rotated" rows from the boundary changed which samples each partial sum grouped with the
  input's address, so results differed in the last bits between two copies of one array (a
  zero-init residual test caught it); now results are bit-identical wherever the input sits
  (tested). Folding the per-position sums into channels as a vectorized copy for L = 1:
  statistics of (256, 1024) 41 → 24 µs.
* Threads. The Python-level pool (a queue per part, the GIL handed back and forth) cost
  48 µs per split pass back to back and 12 µs after idle time, and kept the last part's
  arrays alive, so the next call's fresh output page-faulted (119–138 faults per call, p90
  1.8 ms for a 0.35 ms pass). Replaced by worker threads that run a compiled loop without the
  GIL: parts are claimed with compare-and-swap on one atomic word. Splitting a layer call
  costs ~5.5 µs in all (eval forward of a tiny input: 2.8 µs on one thread, 8.3 µs split in
  2 chunks; 2.7 µs of it is the Python side — pool lock, scratch arrays); the output pass of
  (256, 1024) 22.5 → 12.6 µs on 2 threads (prototype of the hand-off). Every pass now splits from
  2¹⁷ elements, in chunks of ≥ 2¹⁸ elements, 4 per thread (8 chunks of 32 rows cost the
  column form's per-chunk set-up: (256, 1024) fwd+bwd 169 against 102 µs). An idle worker
  spins 200 µs calling `sched_yield` at every turn: spinning without yielding made the
  784-1024-1024 step 17.3 ms against 12.95 with the passes on one thread (BLAS threads
  starved); with the yield 12.6–12.8 ms.
* Output buffers: the layer reuses its previous y and dx buffers when their reference count
  shows nothing else holds them (no allocation, no page faults).
* Benchmark harness: 5 ms of untimed calls before each timed block (after the 20 ms idle
  time the first calls of both frameworks ran 2–10× slower for about a millisecond).
* Tried and dropped: `CLZERO` before writing each output line, to skip the read for
  ownership (5–10× slower on this VM); processing the output pass in reverse chunk order to
  reuse the statistics pass's cache lines (874/817 against 965/799 µs, no gain); x and y in
  2 MiB transparent huge pages (eval (4096, 1024) 368 against 254 µs — slower); y placed at
  other offsets from x modulo 4 KiB (no effect); the (N, C) output loop unrolled over 2 or 4
  samples to load each constant once per group (822–901 against 543 µs, slower).
  Non-temporal stores were not tried: these tensors (16.8 MB each) nearly fit the 32 MB L3
  together, so the output passes run from cache, and streaming y to DRAM would add traffic.
  The large forward-only cases remain bound by that cache's bandwidth on both sides:
  gammabeta and PyTorch move the same bytes, and their ratio swings by ±10 % from run to
  run on this shared machine.

**Rest of the training step.** Convolution: the batch folded into the GEMM (one
`(O, C·k) @ (C·k, N·L)` per layer instead of N small ones), `np.pad` replaced by zeros + copy
(33 → 23 µs; 14 → 1.3 µs for one input channel), the columns no longer cached between the
passes (rebuilt in backward) and dx accumulated one kernel tap at a time: CNN step 10.0 →
~6 ms and its memory 9.4 → ~4 MB. MaxPool with stride = kernel: windows as a reshape and the
argmax without `np.where` (220 µs for 64 K elements, against 9 µs for a masked multiply); the
same for ReLU, which keeps its output (as PyTorch does) instead of a bool mask. AdamW: every
update in place through one reused work array (same rounding as before, no temporaries).
Linear and Conv gradients are not copied on first accumulation. Every layer releases its
backward cache once backward has run (as PyTorch frees saved tensors): the CNN step's peak
6.75 → 3.9 MB. Fresh large temporaries page-faulted (a conv layer's fwd+bwd took 2.06 ms with
glibc's defaults and 0.96 ms with `MALLOC_MMAP_THRESHOLD_` raised): fixed in issue #17's
second round, below, which also removes the column rebuild from stride-1 backward passes.

**Whole commands, busy machines, the first run (issue #17).** Measured causes and changes:

* Threads on a busy machine: with one busy process on the 2 cores, a (256, 784) @ (784, 1024)
  float32 product took 32 ms in NumPy's OpenBLAS on 2 threads, 6.8 ms on 1 (quiet: 3.9 ms on
  2; PyTorch 16 and 8 ms): a waiting thread spins on the core its peer needs. The training
  loop now times its own steps and keeps the faster thread count (`gammabeta.autothreads`):
  20 epochs of the default MLP next to a busy process 26–28 s before, 4.3–5.8 s after.
* Start-up: `gammabeta --help` imported NumPy and the model code to build its parsers
  (0.51–0.57 s); the packages now load their names on first use (0.15 s).
* The first run: the install step compiles the kernels (100 s here) and generates MNIST-1D
  (4.7 s of the first run before). A kernel cache compiled from an older version of another
  kernel file crashed inside LLVM at exit (Numba checks a cached function against its own file
  only): a hash of every kernel source now empties the cache when one changes.
* The data's gradient: the first Linear/Conv no longer computes dx (PyTorch's saving for an
  input that does not require grad), ~10 % of an MLP step.
* Tried and dropped: the loaded kernels for BatchNorm inputs of every size (CNN run 38.9 →
  33.9 s) made a run's rounding depend on what the process ran before, so the choice stays a
  function of the size (and of the run's length, below).

Second round (the first left the quiet CNN at 0.94× PyTorch, the CNN under load 1.22× slower
with the kernels, and the MLP steps 2.05× and 3.58× their GEMM floor):

* Freed buffers: glibc handed the freed top of the heap back to the kernel at every step
  (trim threshold 128 KiB), so a step's temporaries returned as fresh pages and every first
  write faulted. `gammabeta._malloc` raises the trim threshold to 256 MiB and fixes the mmap
  threshold at 32 MiB (`mallopt`, glibc only; `GAMMABETA_MALLOC=off` or the user's own
  `MALLOC_*_` settings leave malloc alone): the CNN step 27.8–31.4 → 16.0–20.6 ms, one
  convolution's col2im 3.7 → 0.6 ms. The setting is per process, so in this report's
  side-by-side cases PyTorch, in the same process, gains from it too.
* AdamW: the one-pass Numba update dropped in the first round vectorizes once its error
  model is NumPy's (Numba's default checks every division for zero and keeps the loop
  scalar): 13.7 → 3.2 ms for 1.86 M float32 values, 2.2 ms split over two threads. It is bit
  for bit the NumPy update (no fast-math; tests/test_optim_fused.py), so it runs whenever
  Numba is loaded anyway; the 784-1024-1024 step 42.7 → 29.4 ms (full runs of `make bench`,
  before and after; 38.4 ms in this report's busier run).
* Convolutions with stride 1: the columns are laid on the padded input grid, so each kernel
  tap is one contiguous slice (no strided gather), col2im is one contiguous add per tap (for
  a 32-channel, length-40 layer the three transposed strided adds took 0.43 ms, the three
  contiguous ones 0.08–0.10 ms), and dW is one GEMM per tap against the shifted input, so
  backward never rebuilds the columns. Tried and dropped: keeping the columns from forward to
  backward (up to 16 MiB) made the CNN step's peak memory 1.77× PyTorch's. It was faster:
  the dW GEMM on kept columns took 0.36 ms against 0.53 ms for the three per-tap GEMMs of a
  32-channel, length-40 layer, and in alternating runs the whole step took 12.7–15.3 ms with
  kept columns against 14.5–16.4 ms without.
* BatchNorm on inputs with positions uses the kernels from 2¹² values (was 2¹⁵): the CNN's
  (100, 32, 5) layers fwd+bwd 0.74 → 0.11 ms.
* Short runs: loading Numba costs a process ~1.8 s of CPU (Numba's NumPy support, which
  imports SciPy's BLAS, and the cached code): a BatchNorm fwd+bwd in a fresh process took
  2.0–2.1 s with the kernels and 0.27–0.31 s without. Under two busy processes the 4-epoch
  CNN took 12.9–16.6 s with the kernels and 8.8–10.4 s without. `gammabeta.jit_plan` keeps a
  run that normalizes fewer than 2·10⁸ values in all on NumPy (the CNN: 69 M in 4 epochs,
  691 M in its default 40), decided from the model, batch and epochs only.
* Not met: the 784-256-256-10 step (1.7 ms of GEMMs) stays above 1.5× its floor: the loss,
  the optimizer and eight layers' Python calls cost ~1.5 ms on their own.

Third round (the second left the quiet CNN at 0.79–0.84× PyTorch over two runs and the MLP
steps at 1.55–1.64× and 2.68–3.82× their GEMMs alone). Where each step's time goes, layer by
layer against each layer's GEMMs alone: [benchmarks-profile.md](benchmarks-profile.md)
(`benchmarks/profile_step.py`, part of `make bench`).

* Convolution dW with stride 1 is again one GEMM, against the columns rebuilt in backward
  (one copy, freed at once), instead of one GEMM per tap against the shifted grid: those k
  products are skinny (32 × 4,200 × 32 for a 32-channel, length-40 layer) and read a
  transposed operand. That layer's dW: 0.60 against 0.95 ms; the CNN step in an alternating
  A/B 20.8 against 21.5 ms (median); peak memory of the step 4.2 MB against PyTorch's 4.4–4.9.
* ReLU: `np.maximum(x, 0)` runs NumPy's scalar loop (its SIMD loop needs two array operands);
  against a cached block of zeros (256 KB, shared) the same bits come 2–3× faster: (256, 1024)
  float32 200 → 68 µs, (100, 32, 40) 107 → 35 µs. In the steps it saves 0–0.3 ms: right after
  a matrix product the activations come from memory, not cache — a BatchNorm forward on
  (256, 1024) took 0.71–0.86 ms just after a 256 × 1024 × 1024 product (one BLAS thread or
  two) and 0.19–0.27 ms on a warm input, so the step's work outside its GEMMs is bound by memory
  bandwidth (AdamW alone moves 52 MB a step in the 1024-wide MLP).
* CrossEntropyLoss with class indices (no class weights, no smoothing) picks log p of the
  target instead of building a dense one-hot: (128, 10) forward+backward 204 → 129 µs, the
  same bits.
* The non-finite checks after each step walk the modules once without building names (a name
  only for a bad tensor): 0.43 → 0.27 ms a CNN step.
* The thread tuner keeps the count with the quickest median probe step (was: the quickest
  single step): in 480 alternating CNN steps two threads' steps varied more (median 16.7 ms
  on one thread, 19.3 on two; fastest 12.0 and 14.6), so a lucky step could keep the slower
  count for the next 5 s. Whole runs did not show a difference beyond this VM's noise (three
  alternating pairs: 28.8–31.8 s before, 29.9–33.1 s after; a fixed single thread 27.8–29.8 s).
* Tried and dropped: compiled (Numba) layout passes for the convolutions — the input onto the
  grid, the output crop with the bias, dy onto the grid, col2im's gather. Bit for bit the
  NumPy results, but NumPy already moves the length-40 rows near the copy bandwidth (the
  input onto the grid: 73 µs NumPy, 123–212 µs compiled); only the output crop and dy were
  faster (48 → 34 and 53 → 40 µs), and the CNN step in an alternating A/B did not change
  (12.18 against 12.33 ms, 16.34 against 16.34 ms).
* The 784-1024-1024-10 step: 1.46× its GEMMs alone in the run of 2026-12-02 06:49; in
  repeated measurements the same hour 1.44–1.71× (its GEMMs alone 19.1–19.8 ms, the step
  27.9–33.8 ms), so this line passed or failed with the machine's noise.
* Not met: the 784-256-256-10 step, 1.93× its GEMMs alone in that run (1.42–2.20× in the repeated
  measurements): its GEMMs take 1.4–2.1 ms and the rest — the optimizer (0.78 ms, memory-bound
  on 7.5 MB), four BatchNorm and ReLU calls, the loss and the layers' Python calls — about as
  much again. `python benchmarks/raw_step.py 5` writes the same step as one bare NumPy
  function (no modules, checks or caches; the same fused AdamW) and times it in alternating
  rounds: 1.57–2.14× the GEMMs alone, against gammabeta's 1.94–2.89× in the same rounds. So
  NumPy building blocks miss 1.5× here even without a library around them; reaching it would
  take one compiled pass over the whole step.

Fourth round (the third left the 784-1024-1024-10 step at 1.46× its GEMMs alone with no margin,
and the 784-256-256-10 step at 1.93×):

* The floor is timed in the same alternating rounds as the step: its products back to back,
  the median of the rounds (`flops.gemm_runner`). It was each product timed alone, best of 5,
  summed, minutes away from the step — on this VM, whose speed changes from minute to minute,
  that moved the 1024-wide step between 1.44× and 1.71× in one hour. The old floor stays in
  the table (*best alone*); in this report both give the same verdicts.
* Adam/AdamW: the fused kernel's scalar arguments are computed once per group and step count
  (was: per tensor), and each tensor gets one type and layout test: 21 → 9 µs of Python per
  tensor (100 tensors of 256 values, medians, alternating runs).
* AdamW's update runs on the calling thread. Split over two threads it was 1.4× faster
  measured alone, but inside a training step — right after the backward pass's products —
  it was slower: 1.99 vs 1.80 ms and 2.06 vs 1.86 ms (1.86 M values, two runs), 6.71 vs 6.34 ms
  (5.8 M values), medians of 110 alternating steps. BatchNorm's split over the worker threads
  made no difference inside a step either (784-1024-1024-10: 29.57 vs 29.53 ms and 24.59 vs
  24.67 ms; 784-2048-2048-10, batch 512: 142.2 vs 141.7 ms; alternating steps), and it is
  1.1–1.5× faster on its own from 2¹⁹ values, so it stays.
* CrossEntropyLoss with class indices: two reductions check the targets in the common case
  (every index in range, `ignore_index` outside the classes) instead of five passes; the
  target's log p and the one-hot come through flat indices: (128, 10) forward+backward 106–113
  → 56 µs in alternating runs. The same values; a new test checks an `ignore_index` that is
  also a class against PyTorch.
* Not met: the 784-256-256-10 step, 2.10× its GEMMs alone in this report. Run back to back
  (`python benchmarks/raw_step.py 4`, 300 steps per median, the floor in the same rounds):
  gammabeta's step 1.76–1.82 ms, the bare NumPy step 1.61–1.64 ms, its GEMMs 1.00–1.25 ms
  (1.44–1.81× and 1.29–1.64×). The library now adds ~10% to bare NumPy (the third round:
  25–35%); what remains is a step's fixed cost — the same layers 8 wide (8-8-8-2, batch 4)
  take 494 µs a step in gammabeta, 905 µs in PyTorch — and the products themselves running
  1.15–1.3× slower inside the step than alone (`benchmarks-profile.md`: weights stored
  (out, in) as PyTorch stores them give OpenBLAS a transposed operand, 6–9% on these shapes,
  and the caches hold other layers' data).

Fifth round (the fourth left the 784-256-256-10 step at 2.10× its GEMMs alone): what a
whole-step compiled design reaches. No change to the library; one new measurement.
`benchmarks/fused_step.py` writes the 784-256-256-10 step with nothing but its eight GEMMs
outside compiled code: the GEMMs write into buffers allocated once (`np.matmul(..., out=...)`,
the weight gradients straight into one flat gradient buffer), three Numba passes do the rest
(BatchNorm + ReLU forward, ReLU + BatchNorm backward, softmax cross-entropy with its gradient),
and AdamW is one call per parameter group over flat buffers. It starts from gammabeta's model
and data and keeps PyTorch's BatchNorm semantics (running statistics included); after 3 steps
its parameters and statistics differ from gammabeta's by at most 6.4e-6 (updates are 1e-3; the
largest differences are a few of the 200,704 first-layer weights whose gradient is near 0, where
Adam's first steps divide by it). It is a measurement, not a design: a program for one
architecture.

`python benchmarks/raw_step.py 3`, three runs (13:03–13:06 UTC, load 1.1, on a 2-core AMD EPYC
VM with AVX-512 — NumPy's OpenBLAS picks its SkylakeX kernels there — where the committed run's
host had AVX2 only): each line times every variant in 10-call blocks taken in turn, 100 rounds,
so that all of them sample this VM's fast and slow phases (which last about a second) alike;
then the floor, gammabeta's step and the fused one in make bench's harness (`run.alternate`):

| | × GEMMs alone: median (range) of 9 lines | in `run.alternate`, × floor |
| --- | --- | --- |
| gammabeta's step | 1.93× (1.81–2.14×) | 2.02×, 1.74×, 1.93× |
| the bare NumPy step | 1.72× (1.66–2.06×) | |
| the fused step | 1.33× (1.30–1.76×) | 1.63×, 1.28×, 1.40× |

The high ends are lines in a slow phase (GEMMs alone 1.27–1.53 ms against 1.00–1.06 ms): a slow
phase slows the small passes more than the products, so every ratio rises. The fused step's
buffers page-aligned or from malloc made no difference (median 1.33× both).

So on this machine the line is met only by fusing across layers, and even then not in every run
of make bench's harness (1.63× in one of three). The gap between gammabeta's step and the fused
one (~0.6×) is spread over parts of 0.06–0.20 ms each — by `benchmarks-profile.md`, BatchNorm
0.20 ms a step, ReLU 0.08, the loss 0.08, the Linear layers' work beside their GEMMs 0.14, AdamW
0.20 (eight calls; the fused step makes two), the rest 0.06. Closing it in the library would
take fused training paths — a `Sequential` that runs Linear→BatchNorm→ReLU as one pass each way,
a compiled cross-entropy, a multi-tensor AdamW over flat buffers — each giving the values of the
layers it replaces and tested against PyTorch like them; a design change, left for a decision
(see issue #17).
"""
