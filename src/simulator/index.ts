/** The built-in IoT Platform simulator (DESIGN.md §9). */
export { runSimulatorCli, parseSimulatorArgs, SimulatorUsageError, SIMULATOR_USAGE } from './cli.js';
export type { ParsedSimulatorArgs, SimulatorCliIo } from './cli.js';
export {
  DEFAULT_QPS,
  FAULT_KINDS,
  IOT_API_VERSION,
  SIMULATOR_ACTIONS,
  SIMULATOR_DEFAULTS,
} from './options.js';
export type { FaultKind, FaultOptions, FaultRates, ScriptedFault, SimulatorAction, SimulatorOptions } from './options.js';
export { loadScenario, parseScenario, parseScenarioBatch } from './scenario.js';
export type { BatchOutcome, Scenario, ScenarioBatch, ScenarioBatchInput, ScenarioProduct } from './scenario.js';
export { startSimulator } from './server.js';
export type { RequestLogEntry, SimulatorControl, SimulatorHandle } from './server.js';
export type { ApplyStatus, BatchSnapshot, InvalidDetail, SimDevice } from './state.js';
export type { StsCredential, SignatureVersion } from './auth.js';
export { UNKNOWN_STATUS } from './actions.js';
export { DEVICE_NAME_PATTERN } from './state.js';
