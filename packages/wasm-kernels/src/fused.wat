;; Fused kernels of @mkor/wasm-kernels, in WebAssembly text with 128-bit SIMD. They run on the
;; memory of tfjs-backend-wasm itself (imported, never copied): every pointer is a byte offset of
;; float32 data in that memory, every count a number of float32 entries. The arithmetic is IEEE
;; float32 in the order tfjs's separate kernels would apply it (no fused multiply-add), so a fused
;; result equals the unfused one bit for bit; sums of squares accumulate in float64.
;;
;; compile-wat.mjs turns this file into fused-binary.ts (two binaries: for an unshared memory and
;; for the shared memory of tfjs-backend-wasm's threaded build). The line `(import "env" "memory"
;; (memory 1))` below is rewritten for the shared one.
(module
  (import "env" "memory" (memory 1))

  ;; 1 when some x[i] is NaN or ±Inf, else 0: x − x is +0 (all bits clear) for every finite x and
  ;; NaN otherwise, so OR-ing the bits of x − x over all entries finds any non-finite one.
  (func (export "nonFinite") (param $x i32) (param $n i32) (result i32)
    (local $end i32) (local $bits v128) (local $lane v128) (local $tail i32) (local $value f32)
    (local.set $end (i32.add (local.get $x) (i32.shl (i32.and (local.get $n) (i32.const -4)) (i32.const 2))))
    (block $vectorsDone
      (loop $vectors
        (br_if $vectorsDone (i32.ge_u (local.get $x) (local.get $end)))
        (local.set $lane (v128.load (local.get $x)))
        (local.set $bits (v128.or (local.get $bits) (f32x4.sub (local.get $lane) (local.get $lane))))
        (local.set $x (i32.add (local.get $x) (i32.const 16)))
        (br $vectors)))
    (local.set $end (i32.add (local.get $end) (i32.shl (i32.and (local.get $n) (i32.const 3)) (i32.const 2))))
    (block $scalarsDone
      (loop $scalars
        (br_if $scalarsDone (i32.ge_u (local.get $x) (local.get $end)))
        (local.set $value (f32.load (local.get $x)))
        (local.set $tail (i32.or (local.get $tail) (i32.reinterpret_f32 (f32.sub (local.get $value) (local.get $value)))))
        (local.set $x (i32.add (local.get $x) (i32.const 4)))
        (br $scalars)))
    (i32.or (v128.any_true (local.get $bits)) (i32.ne (local.get $tail) (i32.const 0))))

  ;; 1 when some a[i] + b[i] is NaN or ±Inf (an entry or the float32 sum), else 0.
  (func (export "nonFiniteSum") (param $a i32) (param $b i32) (param $n i32) (result i32)
    (local $end i32) (local $bits v128) (local $lane v128) (local $tail i32) (local $value f32)
    (local.set $end (i32.add (local.get $a) (i32.shl (i32.and (local.get $n) (i32.const -4)) (i32.const 2))))
    (block $vectorsDone
      (loop $vectors
        (br_if $vectorsDone (i32.ge_u (local.get $a) (local.get $end)))
        (local.set $lane (f32x4.add (v128.load (local.get $a)) (v128.load (local.get $b))))
        (local.set $bits (v128.or (local.get $bits) (f32x4.sub (local.get $lane) (local.get $lane))))
        (local.set $a (i32.add (local.get $a) (i32.const 16)))
        (local.set $b (i32.add (local.get $b) (i32.const 16)))
        (br $vectors)))
    (local.set $end (i32.add (local.get $end) (i32.shl (i32.and (local.get $n) (i32.const 3)) (i32.const 2))))
    (block $scalarsDone
      (loop $scalars
        (br_if $scalarsDone (i32.ge_u (local.get $a) (local.get $end)))
        (local.set $value (f32.add (f32.load (local.get $a)) (f32.load (local.get $b))))
        (local.set $tail (i32.or (local.get $tail) (i32.reinterpret_f32 (f32.sub (local.get $value) (local.get $value)))))
        (local.set $a (i32.add (local.get $a) (i32.const 4)))
        (local.set $b (i32.add (local.get $b) (i32.const 4)))
        (br $scalars)))
    (i32.or (v128.any_true (local.get $bits)) (i32.ne (local.get $tail) (i32.const 0))))

  ;; Σ x[i]² in float64: a float32 square is exact in float64 and cannot overflow or underflow
  ;; there, so the sum is finite exactly when every entry is. Four float64 accumulators.
  (func (export "sumOfSquares") (param $x i32) (param $n i32) (result f64)
    (local $end i32) (local $low v128) (local $high v128) (local $lane v128) (local $wide v128)
    (local $tail f64) (local $value f64)
    (local.set $end (i32.add (local.get $x) (i32.shl (i32.and (local.get $n) (i32.const -4)) (i32.const 2))))
    (block $vectorsDone
      (loop $vectors
        (br_if $vectorsDone (i32.ge_u (local.get $x) (local.get $end)))
        (local.set $lane (v128.load (local.get $x)))
        (local.set $wide (f64x2.promote_low_f32x4 (local.get $lane)))
        (local.set $low (f64x2.add (local.get $low) (f64x2.mul (local.get $wide) (local.get $wide))))
        (local.set $wide (f64x2.promote_low_f32x4
          (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $lane) (local.get $lane))))
        (local.set $high (f64x2.add (local.get $high) (f64x2.mul (local.get $wide) (local.get $wide))))
        (local.set $x (i32.add (local.get $x) (i32.const 16)))
        (br $vectors)))
    (local.set $end (i32.add (local.get $end) (i32.shl (i32.and (local.get $n) (i32.const 3)) (i32.const 2))))
    (block $scalarsDone
      (loop $scalars
        (br_if $scalarsDone (i32.ge_u (local.get $x) (local.get $end)))
        (local.set $value (f64.promote_f32 (f32.load (local.get $x))))
        (local.set $tail (f64.add (local.get $tail) (f64.mul (local.get $value) (local.get $value))))
        (local.set $x (i32.add (local.get $x) (i32.const 4)))
        (br $scalars)))
    (local.set $low (f64x2.add (local.get $low) (local.get $high)))
    (f64.add
      (f64.add (f64x2.extract_lane 0 (local.get $low)) (f64x2.extract_lane 1 (local.get $low)))
      (local.get $tail)))

  ;; out[i] = x[i] · factor (float32). `out` may be `x`.
  (func (export "scale") (param $out i32) (param $x i32) (param $n i32) (param $factor f32)
    (local $end i32) (local $factors v128)
    (local.set $factors (f32x4.splat (local.get $factor)))
    (local.set $end (i32.add (local.get $x) (i32.shl (i32.and (local.get $n) (i32.const -4)) (i32.const 2))))
    (block $vectorsDone
      (loop $vectors
        (br_if $vectorsDone (i32.ge_u (local.get $x) (local.get $end)))
        (v128.store (local.get $out) (f32x4.mul (v128.load (local.get $x)) (local.get $factors)))
        (local.set $x (i32.add (local.get $x) (i32.const 16)))
        (local.set $out (i32.add (local.get $out) (i32.const 16)))
        (br $vectors)))
    (local.set $end (i32.add (local.get $end) (i32.shl (i32.and (local.get $n) (i32.const 3)) (i32.const 2))))
    (block $scalarsDone
      (loop $scalars
        (br_if $scalarsDone (i32.ge_u (local.get $x) (local.get $end)))
        (f32.store (local.get $out) (f32.mul (f32.load (local.get $x)) (local.get $factor)))
        (local.set $x (i32.add (local.get $x) (i32.const 4)))
        (local.set $out (i32.add (local.get $out) (i32.const 4)))
        (br $scalars))))

  ;; One Adam step per entry, as @mkor/first-order's adam computes it with separate kernels:
  ;;   m' = m·β₁ + g·(1 − β₁),  v' = v·β₂ + g²·(1 − β₂),  u = (m'/c₁) / (√(v'/c₂) + ε)
  ;; with c₁ = 1 − β₁ᵗ and c₂ = 1 − β₂ᵗ (every constant already rounded to float32).
  (func (export "adam")
    (param $g i32) (param $m i32) (param $v i32) (param $mOut i32) (param $vOut i32) (param $uOut i32) (param $n i32)
    (param $beta1 f32) (param $oneMinusBeta1 f32) (param $beta2 f32) (param $oneMinusBeta2 f32)
    (param $correction1 f32) (param $correction2 f32) (param $epsilon f32)
    (local $i i32) (local $end i32) (local $offset i32)
    (local $gv v128) (local $mv v128) (local $vv v128)
    (local $gs f32) (local $ms f32) (local $vs f32)
    (local.set $end (i32.shl (i32.and (local.get $n) (i32.const -4)) (i32.const 2)))
    (block $vectorsDone
      (loop $vectors
        (br_if $vectorsDone (i32.ge_u (local.get $offset) (local.get $end)))
        (local.set $gv (v128.load (i32.add (local.get $g) (local.get $offset))))
        (local.set $mv (f32x4.add
          (f32x4.mul (v128.load (i32.add (local.get $m) (local.get $offset))) (f32x4.splat (local.get $beta1)))
          (f32x4.mul (local.get $gv) (f32x4.splat (local.get $oneMinusBeta1)))))
        (local.set $vv (f32x4.add
          (f32x4.mul (v128.load (i32.add (local.get $v) (local.get $offset))) (f32x4.splat (local.get $beta2)))
          (f32x4.mul (f32x4.mul (local.get $gv) (local.get $gv)) (f32x4.splat (local.get $oneMinusBeta2)))))
        (v128.store (i32.add (local.get $mOut) (local.get $offset)) (local.get $mv))
        (v128.store (i32.add (local.get $vOut) (local.get $offset)) (local.get $vv))
        (v128.store (i32.add (local.get $uOut) (local.get $offset))
          (f32x4.div
            (f32x4.div (local.get $mv) (f32x4.splat (local.get $correction1)))
            (f32x4.add (f32x4.sqrt (f32x4.div (local.get $vv) (f32x4.splat (local.get $correction2)))) (f32x4.splat (local.get $epsilon)))))
        (local.set $offset (i32.add (local.get $offset) (i32.const 16)))
        (br $vectors)))
    (local.set $end (i32.shl (local.get $n) (i32.const 2)))
    (block $scalarsDone
      (loop $scalars
        (br_if $scalarsDone (i32.ge_u (local.get $offset) (local.get $end)))
        (local.set $gs (f32.load (i32.add (local.get $g) (local.get $offset))))
        (local.set $ms (f32.add
          (f32.mul (f32.load (i32.add (local.get $m) (local.get $offset))) (local.get $beta1))
          (f32.mul (local.get $gs) (local.get $oneMinusBeta1))))
        (local.set $vs (f32.add
          (f32.mul (f32.load (i32.add (local.get $v) (local.get $offset))) (local.get $beta2))
          (f32.mul (f32.mul (local.get $gs) (local.get $gs)) (local.get $oneMinusBeta2))))
        (f32.store (i32.add (local.get $mOut) (local.get $offset)) (local.get $ms))
        (f32.store (i32.add (local.get $vOut) (local.get $offset)) (local.get $vs))
        (f32.store (i32.add (local.get $uOut) (local.get $offset))
          (f32.div
            (f32.div (local.get $ms) (local.get $correction1))
            (f32.add (f32.sqrt (f32.div (local.get $vs) (local.get $correction2))) (local.get $epsilon))))
        (local.set $offset (i32.add (local.get $offset) (i32.const 4)))
        (br $scalars))))

  ;; The rank-1 step of a Sherman–Morrison update in one pass over a d × d matrix:
  ;;   out[i, j] = (p[i, j]·s − (u[i]·u[j])·c) / β
  ;; `out` may be `p`.
  (func (export "rankOneUpdate") (param $out i32) (param $p i32) (param $u i32) (param $d i32) (param $s f32) (param $c f32) (param $beta f32)
    (local $row i32) (local $column i32) (local $rowBytes i32) (local $vectorBytes i32)
    (local $ui f32) (local $uiv v128) (local $sv v128) (local $cv v128) (local $betav v128) (local $at i32)
    (local.set $rowBytes (i32.shl (local.get $d) (i32.const 2)))
    (local.set $vectorBytes (i32.shl (i32.and (local.get $d) (i32.const -4)) (i32.const 2)))
    (local.set $sv (f32x4.splat (local.get $s)))
    (local.set $cv (f32x4.splat (local.get $c)))
    (local.set $betav (f32x4.splat (local.get $beta)))
    (block $rowsDone
      (loop $rows
        (br_if $rowsDone (i32.ge_u (local.get $row) (local.get $d)))
        (local.set $ui (f32.load (i32.add (local.get $u) (i32.shl (local.get $row) (i32.const 2)))))
        (local.set $uiv (f32x4.splat (local.get $ui)))
        (local.set $column (i32.const 0))
        (block $vectorsDone
          (loop $vectors
            (br_if $vectorsDone (i32.ge_u (local.get $column) (local.get $vectorBytes)))
            (local.set $at (i32.add (i32.mul (local.get $row) (local.get $rowBytes)) (local.get $column)))
            (v128.store (i32.add (local.get $out) (local.get $at))
              (f32x4.div
                (f32x4.sub
                  (f32x4.mul (v128.load (i32.add (local.get $p) (local.get $at))) (local.get $sv))
                  (f32x4.mul (f32x4.mul (local.get $uiv) (v128.load (i32.add (local.get $u) (local.get $column)))) (local.get $cv)))
                (local.get $betav)))
            (local.set $column (i32.add (local.get $column) (i32.const 16)))
            (br $vectors)))
        (block $scalarsDone
          (loop $scalars
            (br_if $scalarsDone (i32.ge_u (local.get $column) (local.get $rowBytes)))
            (local.set $at (i32.add (i32.mul (local.get $row) (local.get $rowBytes)) (local.get $column)))
            (f32.store (i32.add (local.get $out) (local.get $at))
              (f32.div
                (f32.sub
                  (f32.mul (f32.load (i32.add (local.get $p) (local.get $at))) (local.get $s))
                  (f32.mul (f32.mul (local.get $ui) (f32.load (i32.add (local.get $u) (local.get $column)))) (local.get $c)))
                (local.get $beta)))
            (local.set $column (i32.add (local.get $column) (i32.const 4)))
            (br $scalars)))
        (local.set $row (i32.add (local.get $row) (i32.const 1)))
        (br $rows))))

  ;; One reading pass over a d × d matrix p for a vector w: for each row i,
  ;;   product[i] = Σⱼ p[i, j]·w[j],   absSum[i] = Σⱼ |p[i, j]|,   maxAbs[i] = maxⱼ |p[i, j]|
  ;; (float32, four lanes then the tail; a NaN entry makes its row's three values NaN).
  (func (export "matrixVectorAndRowNorms")
    (param $p i32) (param $w i32) (param $d i32) (param $product i32) (param $absSum i32) (param $maxAbs i32)
    (local $row i32) (local $column i32) (local $rowBytes i32) (local $vectorBytes i32) (local $at i32)
    (local $lane v128) (local $dots v128) (local $sums v128) (local $maxima v128)
    (local $dot f32) (local $sum f32) (local $max f32) (local $value f32) (local $magnitude f32)
    (local.set $rowBytes (i32.shl (local.get $d) (i32.const 2)))
    (local.set $vectorBytes (i32.shl (i32.and (local.get $d) (i32.const -4)) (i32.const 2)))
    (block $rowsDone
      (loop $rows
        (br_if $rowsDone (i32.ge_u (local.get $row) (local.get $d)))
        (local.set $dots (f32x4.splat (f32.const 0)))
        (local.set $sums (f32x4.splat (f32.const 0)))
        (local.set $maxima (f32x4.splat (f32.const 0)))
        (local.set $column (i32.const 0))
        (block $vectorsDone
          (loop $vectors
            (br_if $vectorsDone (i32.ge_u (local.get $column) (local.get $vectorBytes)))
            (local.set $at (i32.add (local.get $p) (i32.add (i32.mul (local.get $row) (local.get $rowBytes)) (local.get $column))))
            (local.set $lane (v128.load (local.get $at)))
            (local.set $dots (f32x4.add (local.get $dots) (f32x4.mul (local.get $lane) (v128.load (i32.add (local.get $w) (local.get $column))))))
            (local.set $lane (f32x4.abs (local.get $lane)))
            (local.set $sums (f32x4.add (local.get $sums) (local.get $lane)))
            ;; max that propagates NaN (f32x4.max does).
            (local.set $maxima (f32x4.max (local.get $maxima) (local.get $lane)))
            (local.set $column (i32.add (local.get $column) (i32.const 16)))
            (br $vectors)))
        (local.set $dot (f32.add
          (f32.add (f32x4.extract_lane 0 (local.get $dots)) (f32x4.extract_lane 1 (local.get $dots)))
          (f32.add (f32x4.extract_lane 2 (local.get $dots)) (f32x4.extract_lane 3 (local.get $dots)))))
        (local.set $sum (f32.add
          (f32.add (f32x4.extract_lane 0 (local.get $sums)) (f32x4.extract_lane 1 (local.get $sums)))
          (f32.add (f32x4.extract_lane 2 (local.get $sums)) (f32x4.extract_lane 3 (local.get $sums)))))
        (local.set $max (f32.max
          (f32.max (f32x4.extract_lane 0 (local.get $maxima)) (f32x4.extract_lane 1 (local.get $maxima)))
          (f32.max (f32x4.extract_lane 2 (local.get $maxima)) (f32x4.extract_lane 3 (local.get $maxima)))))
        (block $scalarsDone
          (loop $scalars
            (br_if $scalarsDone (i32.ge_u (local.get $column) (local.get $rowBytes)))
            (local.set $value (f32.load (i32.add (local.get $p) (i32.add (i32.mul (local.get $row) (local.get $rowBytes)) (local.get $column)))))
            (local.set $dot (f32.add (local.get $dot) (f32.mul (local.get $value) (f32.load (i32.add (local.get $w) (local.get $column))))))
            (local.set $magnitude (f32.abs (local.get $value)))
            (local.set $sum (f32.add (local.get $sum) (local.get $magnitude)))
            (local.set $max (f32.max (local.get $max) (local.get $magnitude)))
            (local.set $column (i32.add (local.get $column) (i32.const 4)))
            (br $scalars)))
        (f32.store (i32.add (local.get $product) (i32.shl (local.get $row) (i32.const 2))) (local.get $dot))
        (f32.store (i32.add (local.get $absSum) (i32.shl (local.get $row) (i32.const 2))) (local.get $sum))
        (f32.store (i32.add (local.get $maxAbs) (i32.shl (local.get $row) (i32.const 2))) (local.get $max))
        (local.set $row (i32.add (local.get $row) (i32.const 1)))
        (br $rows))))

  ;; One writing pass of a dense MKOR refresh over a d × d matrix p: the optional blend toward the
  ;; identity and the rank-1 step together, returning 1 when some result is NaN or ±Inf:
  ;;   out[i, j] = ((p[i, j]·keep + [i = j]·add)·s − (u[i]·u[j])·c) / divisor
  ;; `out` must not be `p` (the diagonal is rewritten after its row).
  (func (export "blendedRankOneUpdate")
    (param $out i32) (param $p i32) (param $u i32) (param $d i32)
    (param $keep f32) (param $add f32) (param $s f32) (param $c f32) (param $divisor f32) (result i32)
    (local $row i32) (local $column i32) (local $rowBytes i32) (local $vectorBytes i32) (local $at i32)
    (local $ui f32) (local $uiv v128) (local $keepv v128) (local $sv v128) (local $cv v128) (local $divisorv v128)
    (local $lane v128) (local $bits v128) (local $tail i32) (local $value f32)
    (local.set $rowBytes (i32.shl (local.get $d) (i32.const 2)))
    (local.set $vectorBytes (i32.shl (i32.and (local.get $d) (i32.const -4)) (i32.const 2)))
    (local.set $keepv (f32x4.splat (local.get $keep)))
    (local.set $sv (f32x4.splat (local.get $s)))
    (local.set $cv (f32x4.splat (local.get $c)))
    (local.set $divisorv (f32x4.splat (local.get $divisor)))
    (block $rowsDone
      (loop $rows
        (br_if $rowsDone (i32.ge_u (local.get $row) (local.get $d)))
        (local.set $ui (f32.load (i32.add (local.get $u) (i32.shl (local.get $row) (i32.const 2)))))
        (local.set $uiv (f32x4.splat (local.get $ui)))
        (local.set $column (i32.const 0))
        (block $vectorsDone
          (loop $vectors
            (br_if $vectorsDone (i32.ge_u (local.get $column) (local.get $vectorBytes)))
            (local.set $at (i32.add (i32.mul (local.get $row) (local.get $rowBytes)) (local.get $column)))
            (local.set $lane
              (f32x4.div
                (f32x4.sub
                  (f32x4.mul (f32x4.mul (v128.load (i32.add (local.get $p) (local.get $at))) (local.get $keepv)) (local.get $sv))
                  (f32x4.mul (f32x4.mul (local.get $uiv) (v128.load (i32.add (local.get $u) (local.get $column)))) (local.get $cv)))
                (local.get $divisorv)))
            (v128.store (i32.add (local.get $out) (local.get $at)) (local.get $lane))
            (local.set $bits (v128.or (local.get $bits) (f32x4.sub (local.get $lane) (local.get $lane))))
            (local.set $column (i32.add (local.get $column) (i32.const 16)))
            (br $vectors)))
        (block $scalarsDone
          (loop $scalars
            (br_if $scalarsDone (i32.ge_u (local.get $column) (local.get $rowBytes)))
            (local.set $at (i32.add (i32.mul (local.get $row) (local.get $rowBytes)) (local.get $column)))
            (local.set $value
              (f32.div
                (f32.sub
                  (f32.mul (f32.mul (f32.load (i32.add (local.get $p) (local.get $at))) (local.get $keep)) (local.get $s))
                  (f32.mul (f32.mul (local.get $ui) (f32.load (i32.add (local.get $u) (local.get $column)))) (local.get $c)))
                (local.get $divisor)))
            (f32.store (i32.add (local.get $out) (local.get $at)) (local.get $value))
            (local.set $tail (i32.or (local.get $tail) (i32.reinterpret_f32 (f32.sub (local.get $value) (local.get $value)))))
            (local.set $column (i32.add (local.get $column) (i32.const 4)))
            (br $scalars)))
        ;; The diagonal entry, with the identity's share added.
        (local.set $at (i32.mul (local.get $row) (i32.add (local.get $rowBytes) (i32.const 4))))
        (local.set $value
          (f32.div
            (f32.sub
              (f32.mul (f32.add (f32.mul (f32.load (i32.add (local.get $p) (local.get $at))) (local.get $keep)) (local.get $add)) (local.get $s))
              (f32.mul (f32.mul (local.get $ui) (local.get $ui)) (local.get $c)))
            (local.get $divisor)))
        (f32.store (i32.add (local.get $out) (local.get $at)) (local.get $value))
        (local.set $tail (i32.or (local.get $tail) (i32.reinterpret_f32 (f32.sub (local.get $value) (local.get $value)))))
        (local.set $row (i32.add (local.get $row) (i32.const 1)))
        (br $rows)))
    (i32.or (v128.any_true (local.get $bits)) (i32.ne (local.get $tail) (i32.const 0))))
)
