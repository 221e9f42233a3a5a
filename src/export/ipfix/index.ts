// IPFIX exporter (RFC 7011): the agent's entry points.
export { createIpfixExporter } from './exporter.js';
export { ipfixConfigSchema, type IpfixConfig, type IpfixCollectorConfig } from './config.js';
