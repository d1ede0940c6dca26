// The registry client: references, the distribution API with its
// authentication, resolve, verified fetch, pull and push.
export {
  DEFAULT_DOMAIN,
  DEFAULT_TAG,
  parseReference,
  parseDockerReference,
  withDefaultTag,
  withTag,
  withDigest,
  repositoryName,
  formatReference,
  familiarName,
  familiarString,
  validateDigest,
  isDomain,
} from './reference.js';
export type { ImageReference } from './reference.js';
export {
  MediaType,
  MANIFEST_ACCEPT,
  isIndexType,
  isManifestType,
  parseDescriptor,
  parseManifest,
  parseIndex,
  detectManifestType,
} from './media.js';
export type { ImageDescriptor, ImageManifest, ImageIndex, ImagePlatform } from './media.js';
export { hostPlatform, parsePlatformSpec, formatPlatform, normalizePlatform, platformMatches, selectPlatform } from './platform.js';
export { parseWwwAuthenticate, repositoryScope, mergeScopes, TokenCache } from './auth.js';
export type { AuthChallenge, RegistryCredentials, CredentialsProvider } from './auth.js';
export { RegistryClient, Repository, RegistryError, isLoopback } from './client.js';
export type { RegistryClientOptions, RegistryResponse, SendOptions, UploadStart } from './client.js';
export { resolve, fetchManifestBytes, fetchBlobBytes, fetchImageManifests, verifyBytes, digestOf } from './resolve.js';
export type { Resolved, ImageManifests } from './resolve.js';
export { openBlob, fetchBlob, pull } from './fetch.js';
export type { BlobFetchOptions, PullStatus, PullProgress, PullStore, PullOptions, PullResult } from './fetch.js';
export { push } from './push.js';
export type { PushStore, PushStatus, PushProgress, PushOptions, PushResult } from './push.js';
