/**
 * Settings shared by the partition scenario (which runs the balancer with
 * them) and its test (which derives the asserted bound from them).
 *
 * @module
 */

/** The probe settings the balancer runs with in the scenario. */
export const probeSettings = Object.freeze({ interval: 500, timeout: 500, fall: 2, rise: 2 });

/** Slack on top of what the settings imply, in ms: the machine may be loaded. A safety net, not a speed claim. */
export const slackMs = 8000;

/** The longest detection plus recovery may take: fall × interval + timeout + slack. */
export const recoveryBoundMs = probeSettings.fall * probeSettings.interval + probeSettings.timeout + slackMs;

/** The scenario's cases. */
export const scenarioCases = ['partition', 'rejoin', 'sigstop'] as const;
export type ScenarioCase = (typeof scenarioCases)[number];
