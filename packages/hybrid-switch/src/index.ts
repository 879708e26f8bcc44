export { anyOf, lossRateRule, switchAtStep } from './rules';
export type {
  LossObservation,
  LossRateRuleOptions,
  LossRateState,
  RuleStateOf,
  SwitchAtStepState,
  SwitchDecision,
  SwitchRule,
} from './rules';
export { hasSwitched, hybridSwitch } from './hybrid-switch';
export type { HybridSwitchOptions, HybridSwitchState } from './hybrid-switch';
