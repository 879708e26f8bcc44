import type { CollectiveKind, ReduceOp, WirePrecision } from './transport';

/** What a collective call asks for; every rank of the same collective must ask for the same. */
export interface CollectiveRequest {
  readonly kind: CollectiveKind;
  readonly length: number;
  readonly op: ReduceOp;
  readonly precision: WirePrecision;
  readonly root: number;
}

/** How two requests differ, in words, or `undefined` when they agree. */
export function describeMismatch(
  first: CollectiveRequest,
  firstRank: number,
  other: CollectiveRequest,
  otherRank: number,
): string | undefined {
  if (first.kind !== other.kind) {
    return `rank ${firstRank} called ${first.kind}, rank ${otherRank} called ${other.kind}`;
  }
  if (first.length !== other.length) {
    return `rank ${firstRank} sent ${first.length} elements, rank ${otherRank} sent ${other.length}`;
  }
  if (first.op !== other.op) return `rank ${firstRank} asked for op '${first.op}', rank ${otherRank} for '${other.op}'`;
  if (first.precision !== other.precision) {
    return `rank ${firstRank} asked for precision '${first.precision}', rank ${otherRank} for '${other.precision}'`;
  }
  if (first.root !== other.root) return `rank ${firstRank} named root ${first.root}, rank ${otherRank} root ${other.root}`;
  return undefined;
}

