export { Daemon } from './daemon.js';
export type { DaemonOptions } from './daemon.js';
export { builtins, metadataPlugin, exchangePlugin } from './builtins.js';
export {
  PluginSet, SkipPlugin, pluginType, sortPlugins, MetadataPlugin, EventPlugin, GRPCPlugin,
} from './plugin.js';
export type {
  PluginType, PluginRecord, InitContext, PluginInfo, PluginStatus, DaemonPaths, Platform, Closable,
} from './plugin.js';
export { bindService, NAMESPACE_METADATA_KEY } from './grpc.js';
export type { GrpcService, CallContext, StreamSink, UnaryHandler, ServerStreamHandler } from './grpc.js';
export { toGrpcError } from './errors.js';
export type { GrpcError } from './errors.js';
export { Protos, PROTO_FILES, CONVERSION, protoIncludeDirs } from './protos.js';
export { parseFilter, parseFilters, always, mapField, present } from './filters.js';
export type { Filter, Adaptor } from './filters.js';
export { MetadataStore, validateContainer, containerAdaptor } from './metadata/store.js';
export type { NamespaceRecord, ContainerRecord, ContainerInput, ContainerRuntime, NamespacedTable } from './metadata/store.js';
export { EventExchange, Subscription, validateTopic, validateEnvelope, SUBSCRIBER_QUEUE_LIMIT } from './events/exchange.js';
export type { Envelope } from './events/exchange.js';
export {
  now, validateIdentifier, validateLabels, record, optRecord, str, num, strList, strMap, anyMessage, anyMap, timestamp, fieldMask,
} from './wire.js';
export type { AnyMessage, Timestamp, Wire } from './wire.js';
export { parseArgs, parseConfigFile, parseLogLevel, DEFAULT_ADDRESS, DEFAULT_ROOT, DEFAULT_STATE } from './config.js';
export type { DaemonConfig, Command } from './config.js';
export { VERSION, REVISION } from './services/version.js';
export { main } from './cmd/main.js';
export { pullImage, pullDepsOf } from './images/pull.js';
export { exportImages, ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME } from './images/export.js';
export type { ExportOptions, ExportResult, ExportedImage } from './images/export.js';
export { importImages, importRootfs, DOCKER_LAYER_TAR } from './images/import.js';
export type { ImageRunConfig, ImportOptions, ImportedImage, RootfsImportOptions } from './images/import.js';
export type { PullDeps, PullImageOptions, PullImageProgress, PullImageResult, PullImageStatus } from './images/pull.js';
export { ContainerdClient, SERVICES, fromGrpcError } from './client.js';
export type { ClientOptions, Message } from './client.js';
export { pull as transferPull, push as transferPush, importArchive, exportArchive } from './transfer-client.js';
export type {
  TransferProgress, TransferDescriptor, RegistryAuth, TransferCommonOptions, TransferPullOptions, TransferPushOptions,
  TransferImportOptions, TransferExportOptions,
} from './transfer-client.js';
export { StreamManager, StreamingPlugin, receiveBytes, sendBytes } from './services/streaming.js';
export type { TransferStream } from './services/streaming.js';
export { shimDirFor, SOCKET_PATH_MAX } from './tasks/bundle.js';
