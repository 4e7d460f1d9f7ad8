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

/**
 * After the partition heals, how long the balancer may take to spread the
 * streams again (checks up, slow start, rebalancing at its default rate), in ms.
 */
export const healBoundMs = 24_000;

/** Streams each of the three backends must carry once spread again (of 60; an even share is 20). */
export const healSpread = Object.freeze({ min: 15, max: 25 });

/** The scenario's cases. */
export const scenarioCases = ['partition', 'rejoin', 'sigstop'] as const;
export type ScenarioCase = (typeof scenarioCases)[number];
