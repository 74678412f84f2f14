//! Apache Kafka 4.1's configuration definitions, as a static table.
//!
//! Kafka clients see a broker's configuration through DescribeConfigs (value, source,
//! synonyms, type, documentation, sensitivity) and have their CreateTopics / AlterConfigs
//! values checked against Kafka's `ConfigDef` (type parse, then validator). To answer the
//! way Kafka 4.1 answers, Ottla needs Kafka's own definitions: the exact names, types,
//! defaults, validators, documentation strings and the topic → broker synonym mapping.
//! This module holds them, transcribed rather than invented.
//!
//! Sources (Kafka 4.1):
//! - the generated reference `41/generated/topic_config.html` and
//!   `41/generated/kafka_config.html` in `apache/kafka-site` (name, type, default,
//!   valid values, server default property, documentation);
//! - `storage/.../log/LogConfig.java` (topic and broker log definitions, validators),
//!   `server-common/.../ServerTopicConfigSynonyms.java` (synonym chains, including the
//!   hours/minutes → ms conversions), `clients/.../config/ConfigDef.java` (parse rules,
//!   `ConfigException`, `Range`, `ValidString`, `ValidList` wording),
//!   `GzipCompression.LevelValidator` and `ThrottledReplicaListValidator`.
//!
//! Conventions:
//! - `default` is the string Kafka's DescribeConfigs shows (`ConfigDef.convertToString`):
//!   lists joined with `,` (so an empty list is `""`), doubles as Java prints them
//!   (`0.5`, `1.7976931348623157E308`), `None` for a `null` default *and* for keys with
//!   no default at all (`node.id`, `process.roles`, which Kafka requires).
//! - Documentation strings are Kafka's raw doc strings (they contain HTML, as Kafka's
//!   DescribeConfigs documentation field does).
//! - Internal configs (`internal.segment.bytes`, `log.initial.task.delay.ms`, ...) are
//!   left out: Kafka does not list them in DescribeConfigs.
//! - `message.downconversion.enable` and `message.format.version` are not 4.1 topic
//!   configs (removed in 4.0) and are not listed.

/// A config's type, as Kafka's `ConfigDef.Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean,
    String,
    Int,
    Short,
    Long,
    Double,
    List,
    Class,
    Password,
}

impl ConfigType {
    /// The DescribeConfigs (v3+) `config_type` id: UNKNOWN 0, BOOLEAN 1, STRING 2, INT 3,
    /// SHORT 4, LONG 5, DOUBLE 6, LIST 7, CLASS 8, PASSWORD 9.
    pub fn kafka_id(self) -> i8 {
        match self {
            ConfigType::Boolean => 1,
            ConfigType::String => 2,
            ConfigType::Int => 3,
            ConfigType::Short => 4,
            ConfigType::Long => 5,
            ConfigType::Double => 6,
            ConfigType::List => 7,
            ConfigType::Class => 8,
            ConfigType::Password => 9,
        }
    }

    /// Kafka's enum name (`ConfigDef.Type.name()`), as used in its error messages.
    pub fn kafka_name(self) -> &'static str {
        match self {
            ConfigType::Boolean => "BOOLEAN",
            ConfigType::String => "STRING",
            ConfigType::Int => "INT",
            ConfigType::Short => "SHORT",
            ConfigType::Long => "LONG",
            ConfigType::Double => "DOUBLE",
            ConfigType::List => "LIST",
            ConfigType::Class => "CLASS",
            ConfigType::Password => "PASSWORD",
        }
    }
}

/// The validator Kafka attaches to a config (checked after the type parse).
#[derive(Debug, Clone, Copy)]
pub enum Validator {
    None,
    /// inclusive lower bound on an integer value (`Range.atLeast`)
    AtLeast(i64),
    /// inclusive range (`Range.between`)
    Between(i64, i64),
    /// value must be one of these, case-sensitively (`ValidString.in`; every `OneOf`
    /// config in these tables uses the case-sensitive form)
    OneOf(&'static [&'static str]),
    /// comma-separated list whose items must each be one of these (`ValidList.in`, e.g.
    /// cleanup.policy: delete, compact). In 4.1 an empty list passes.
    ListOf(&'static [&'static str]),
    /// Double in [lo, hi] (`Range.between` on a DOUBLE config)
    DoubleBetween(f64, f64),
    /// integer in [lo, hi] or exactly the third value: `compression.gzip.level`
    /// (`GzipCompression.LevelValidator`: 1..=9 or -1)
    BetweenOr(i64, i64, i64),
    /// `ThrottledReplicaListValidator`: the literal `*`, or a list of
    /// `partitionId:brokerId` entries
    ThrottledReplicaList,
}

/// One Kafka config definition.
#[derive(Debug, Clone, Copy)]
pub struct ConfigDef {
    pub name: &'static str,
    pub config_type: ConfigType,
    /// Default as Kafka's DescribeConfigs shows it (e.g. "604800000" for retention.ms,
    /// "delete", "producer" for compression.type, "1048588" for max.message.bytes);
    /// None when Kafka's default is null (or the key has no default).
    pub default: Option<&'static str>,
    /// For topic configs: the broker config that supplies the default (e.g. retention.ms →
    /// "log.retention.ms", max.message.bytes → "message.max.bytes", cleanup.policy →
    /// "log.cleanup.policy"); None when there is none. Always None for broker configs.
    pub broker_synonym: Option<&'static str>,
    pub validator: Validator,
    /// True for PASSWORD configs, as Kafka's `KafkaConfig.maybeSensitive` decides.
    pub sensitive: bool,
    /// Kafka's documentation string.
    pub documentation: &'static str,
}

/// One entry of a topic config's broker synonym chain (Kafka's `ConfigSynonym`): the
/// broker key and the factor that turns its value into the topic config's unit
/// (`log.retention.hours` → ×3 600 000 for `retention.ms`; 1 when no conversion).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerSynonym {
    pub name: &'static str,
    pub multiplier: i64,
}

const BOOLEAN: ConfigType = ConfigType::Boolean;
const STRING: ConfigType = ConfigType::String;
const INT: ConfigType = ConfigType::Int;
const SHORT: ConfigType = ConfigType::Short;
const LONG: ConfigType = ConfigType::Long;
const DOUBLE: ConfigType = ConfigType::Double;
const LIST: ConfigType = ConfigType::List;
const CLASS: ConfigType = ConfigType::Class;
const PASSWORD: ConfigType = ConfigType::Password;

const NO_VALIDATOR: Validator = Validator::None;
const LONG_MAX: &str = "9223372036854775807";
const INT_MAX: &str = "2147483647";

const COMPRESSION_TYPES: &[&str] = &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"];
const CLEANUP_POLICIES: &[&str] = &["compact", "delete"];
const TIMESTAMP_TYPES: &[&str] = &["CreateTime", "LogAppendTime"];

const fn topic(
    name: &'static str,
    config_type: ConfigType,
    default: Option<&'static str>,
    broker_synonym: Option<&'static str>,
    validator: Validator,
    documentation: &'static str,
) -> ConfigDef {
    ConfigDef {
        name,
        config_type,
        default,
        broker_synonym,
        validator,
        sensitive: matches!(config_type, ConfigType::Password),
        documentation,
    }
}

const fn broker(
    name: &'static str,
    config_type: ConfigType,
    default: Option<&'static str>,
    validator: Validator,
    documentation: &'static str,
) -> ConfigDef {
    ConfigDef {
        name,
        config_type,
        default,
        broker_synonym: None,
        validator,
        sensitive: matches!(config_type, ConfigType::Password),
        documentation,
    }
}

/// Every topic-level config Kafka 4.1 knows (LogConfig), in Kafka's alphabetical order as
/// DescribeConfigs lists them.
pub static TOPIC_CONFIGS: &[ConfigDef] = &[
    topic(
        "cleanup.policy",
        LIST,
        Some("delete"),
        Some("log.cleanup.policy"),
        Validator::ListOf(CLEANUP_POLICIES),
        r##"This config designates the retention policy to use on log segments. The "delete" policy (which is the default) will discard old segments when their retention time or size limit has been reached. The "compact" policy will enable <a href="#compaction">log compaction</a>, which retains the latest value for each key. It is also possible to specify both policies in a comma-separated list (e.g. "delete,compact"). In this case, old segments will be discarded per the retention time and size configuration, while retained segments will be compacted."##,
    ),
    topic(
        "compression.gzip.level",
        INT,
        Some("-1"),
        Some("compression.gzip.level"),
        Validator::BetweenOr(1, 9, -1),
        r##"The compression level to use if compression.type is set to <code>gzip</code>."##,
    ),
    topic(
        "compression.lz4.level",
        INT,
        Some("9"),
        Some("compression.lz4.level"),
        Validator::Between(1, 17),
        r##"The compression level to use if compression.type is set to <code>lz4</code>."##,
    ),
    topic(
        "compression.type",
        STRING,
        Some("producer"),
        Some("compression.type"),
        Validator::OneOf(COMPRESSION_TYPES),
        r##"Specify the final compression type for a given topic. This configuration accepts the standard compression codecs ('gzip', 'snappy', 'lz4', 'zstd'). It additionally accepts 'uncompressed' which is equivalent to no compression; and 'producer' which means retain the original compression codec set by the producer."##,
    ),
    topic(
        "compression.zstd.level",
        INT,
        Some("3"),
        Some("compression.zstd.level"),
        Validator::Between(-131072, 22),
        r##"The compression level to use if compression.type is set to <code>zstd</code>."##,
    ),
    topic(
        "delete.retention.ms",
        LONG,
        Some("86400000"),
        Some("log.cleaner.delete.retention.ms"),
        Validator::AtLeast(0),
        r##"The amount of time to retain delete tombstone markers for <a href="#compaction">log compacted</a> topics. This setting also gives a bound on the time in which a consumer must complete a read if they begin from offset 0 to ensure that they get a valid snapshot of the final stage (otherwise delete tombstones may be collected before they complete their scan)."##,
    ),
    topic(
        "file.delete.delay.ms",
        LONG,
        Some("60000"),
        Some("log.segment.delete.delay.ms"),
        Validator::AtLeast(0),
        r##"The time to wait before deleting a file from the filesystem"##,
    ),
    topic(
        "flush.messages",
        LONG,
        Some(LONG_MAX),
        Some("log.flush.interval.messages"),
        Validator::AtLeast(1),
        r##"This setting allows specifying an interval at which we will force an fsync of data written to the log. For example if this was set to 1 we would fsync after every message; if it were 5 we would fsync after every five messages. In general we recommend you not set this and use replication for durability and allow the operating system's background flush capabilities as it is more efficient. This setting can be overridden on a per-topic basis (see <a href="#topicconfigs">the per-topic configuration section</a>)."##,
    ),
    topic(
        "flush.ms",
        LONG,
        Some(LONG_MAX),
        Some("log.flush.interval.ms"),
        Validator::AtLeast(0),
        r##"This setting allows specifying a time interval at which we will force an fsync of data written to the log. For example if this was set to 1000 we would fsync after 1000 ms had passed. Note that this setting depends on the broker-level configuration <code>log.flush.scheduler.interval.ms</code>, which controls how frequently the flush check occurs. In general we recommend you not set this and use replication for durability and allow the operating system's background flush capabilities as it is more efficient."##,
    ),
    topic(
        "follower.replication.throttled.replicas",
        LIST,
        Some(""),
        None,
        Validator::ThrottledReplicaList,
        r##"A list of replicas for which log replication should be throttled on the follower side. The list should describe a set of replicas in the form [PartitionId]:[BrokerId],[PartitionId]:[BrokerId]:... or alternatively the wildcard '*' can be used to throttle all replicas for this topic."##,
    ),
    topic(
        "index.interval.bytes",
        INT,
        Some("4096"),
        Some("log.index.interval.bytes"),
        Validator::AtLeast(0),
        r##"This setting controls how frequently Kafka adds entries to its offset index and, conditionally, to its time index. The default setting ensures that we index a message roughly every 4096 bytes. More frequent indexing allows reads to jump closer to the exact position in the log but results in larger index files. You probably don't need to change this.<p> Note: the time index will be inserted only when the timestamp is greater than the last indexed timestamp.</p>"##,
    ),
    topic(
        "leader.replication.throttled.replicas",
        LIST,
        Some(""),
        None,
        Validator::ThrottledReplicaList,
        r##"A list of replicas for which log replication should be throttled on the leader side. The list should describe a set of replicas in the form [PartitionId]:[BrokerId],[PartitionId]:[BrokerId]:... or alternatively the wildcard '*' can be used to throttle all replicas for this topic."##,
    ),
    topic(
        "local.retention.bytes",
        LONG,
        Some("-2"),
        Some("log.local.retention.bytes"),
        Validator::AtLeast(-2),
        r##"The maximum size of local log segments that can grow for a partition before it deletes the old segments. Default value is -2, it represents `retention.bytes` value to be used. The effective value should always be less than or equal to `retention.bytes` value."##,
    ),
    topic(
        "local.retention.ms",
        LONG,
        Some("-2"),
        Some("log.local.retention.ms"),
        Validator::AtLeast(-2),
        r##"The number of milliseconds to keep the local log segment before it gets deleted. Default value is -2, it represents `retention.ms` value is to be used. The effective value should always be less than or equal to `retention.ms` value."##,
    ),
    topic(
        "max.compaction.lag.ms",
        LONG,
        Some(LONG_MAX),
        Some("log.cleaner.max.compaction.lag.ms"),
        Validator::AtLeast(1),
        r##"The maximum time a message will remain ineligible for compaction in the log. Only applicable for logs that are being compacted."##,
    ),
    topic(
        "max.message.bytes",
        INT,
        Some("1048588"),
        Some("message.max.bytes"),
        Validator::AtLeast(0),
        r##"The largest record batch size allowed by Kafka (after compression if compression is enabled)."##,
    ),
    topic(
        "message.timestamp.after.max.ms",
        LONG,
        Some("3600000"),
        Some("log.message.timestamp.after.max.ms"),
        Validator::AtLeast(0),
        r##"This configuration sets the allowable timestamp difference between the message timestamp and the broker's timestamp. The message timestamp can be later than or equal to the broker's timestamp, with the maximum allowable difference determined by the value set in this configuration. If message.timestamp.type=CreateTime, the message will be rejected if the difference in timestamps exceeds this specified threshold. This configuration is ignored if message.timestamp.type=LogAppendTime."##,
    ),
    topic(
        "message.timestamp.before.max.ms",
        LONG,
        Some(LONG_MAX),
        Some("log.message.timestamp.before.max.ms"),
        Validator::AtLeast(0),
        r##"This configuration sets the allowable timestamp difference between the broker's timestamp and the message timestamp. The message timestamp can be earlier than or equal to the broker's timestamp, with the maximum allowable difference determined by the value set in this configuration. If message.timestamp.type=CreateTime, the message will be rejected if the difference in timestamps exceeds this specified threshold. This configuration is ignored if message.timestamp.type=LogAppendTime."##,
    ),
    topic(
        "message.timestamp.type",
        STRING,
        Some("CreateTime"),
        Some("log.message.timestamp.type"),
        Validator::OneOf(TIMESTAMP_TYPES),
        r##"Define whether the timestamp in the message is message create time or log append time."##,
    ),
    topic(
        "min.cleanable.dirty.ratio",
        DOUBLE,
        Some("0.5"),
        Some("log.cleaner.min.cleanable.ratio"),
        Validator::DoubleBetween(0.0, 1.0),
        r##"This configuration controls how frequently the log compactor will attempt to clean the log (assuming <a href="#compaction">log compaction</a> is enabled). By default we will avoid cleaning a log where more than 50% of the log has been compacted. This ratio bounds the maximum space wasted in the log by duplicates (at 50% at most 50% of the log could be duplicates). A higher ratio will mean fewer, more efficient cleanings but will mean more wasted space in the log. If the max.compaction.lag.ms or the min.compaction.lag.ms configurations are also specified, then the log compactor considers the log to be eligible for compaction as soon as either: (i) the dirty ratio threshold has been met and the log has had dirty (uncompacted) records for at least the min.compaction.lag.ms duration, or (ii) if the log has had dirty (uncompacted) records for at most the max.compaction.lag.ms period."##,
    ),
    topic(
        "min.compaction.lag.ms",
        LONG,
        Some("0"),
        Some("log.cleaner.min.compaction.lag.ms"),
        Validator::AtLeast(0),
        r##"The minimum time a message will remain uncompacted in the log. Only applicable for logs that are being compacted."##,
    ),
    topic(
        "min.insync.replicas",
        INT,
        Some("1"),
        Some("min.insync.replicas"),
        Validator::AtLeast(1),
        r##"Specifies the <i>minimum</i> number of in-sync replicas (including the leader) required for a write to succeed when a producer sets <code>acks</code> to "all" (or "-1"). In the <code>acks=all</code> case, every in-sync replica must acknowledge a write for it to be considered successful. E.g., if a topic has <code>replication.factor</code> of 3 and the ISR set includes all three replicas, then all three replicas must acknowledge an <code>acks=all</code> write for it to succeed, even if <code>min.insync.replicas</code> happens to be less than 3. If <code>acks=all</code> and the current ISR set contains fewer than <code>min.insync.replicas</code> members, then the producer will raise an exception (either <code>NotEnoughReplicas</code> or <code>NotEnoughReplicasAfterAppend</code>).<br> Regardless of the <code>acks</code> setting, the messages will not be visible to the consumers until they are replicated to all in-sync replicas and the <code>min.insync.replicas</code> condition is met.<br> When used together, <code>min.insync.replicas</code> and <code>acks</code> allow you to enforce greater durability guarantees. A typical scenario would be to create a topic with a replication factor of 3, set <code>min.insync.replicas</code> to 2, and produce with <code>acks</code> of "all". This ensures that a majority of replicas must persist a write before it's considered successful by the producer and it's visible to consumers.<p>Note that when the Eligible Leader Replicas feature is enabled, the semantics of this config changes. Please refer to <a href="#eligible_leader_replicas">the ELR section</a> for more info.</p>"##,
    ),
    topic(
        "preallocate",
        BOOLEAN,
        Some("false"),
        Some("log.preallocate"),
        NO_VALIDATOR,
        r##"True if we should preallocate the file on disk when creating a new log segment."##,
    ),
    topic(
        "remote.log.copy.disable",
        BOOLEAN,
        Some("false"),
        None,
        NO_VALIDATOR,
        r##"Determines whether tiered data for a topic should become read only, and no more data uploading on a topic. Once this config is set to true, the local retention configuration (i.e. local.retention.ms/bytes) becomes irrelevant, and all data expiration follows the topic-wide retention configuration(i.e. retention.ms/bytes)."##,
    ),
    topic(
        "remote.log.delete.on.disable",
        BOOLEAN,
        Some("false"),
        None,
        NO_VALIDATOR,
        r##"Determines whether tiered data for a topic should be deleted after tiered storage is disabled on a topic. This configuration should be enabled when trying to set `remote.storage.enable` from true to false"##,
    ),
    topic(
        "remote.storage.enable",
        BOOLEAN,
        Some("false"),
        None,
        NO_VALIDATOR,
        r##"To enable tiered storage for a topic, set this configuration to true. To disable tiered storage for a topic that has it enabled, set this configuration to false. When disabling, you must also set <code>remote.log.delete.on.disable</code> to true."##,
    ),
    topic(
        "retention.bytes",
        LONG,
        Some("-1"),
        Some("log.retention.bytes"),
        NO_VALIDATOR,
        r##"This configuration controls the maximum size a partition (which consists of log segments) can grow to before we will discard old log segments to free up space if we are using the "delete" retention policy. By default there is no size limit only a time limit. Since this limit is enforced at the partition level, multiply it by the number of partitions to compute the topic retention in bytes. Additionally, retention.bytes configuration operates independently of "segment.ms" and "segment.bytes" configurations. Moreover, it triggers the rolling of new segment if the retention.bytes is configured to zero."##,
    ),
    topic(
        "retention.ms",
        LONG,
        Some("604800000"),
        Some("log.retention.ms"),
        Validator::AtLeast(-1),
        r##"This configuration controls the maximum time we will retain a log before we will discard old log segments to free up space if we are using the "delete" retention policy. This represents an SLA on how soon consumers must read their data. If set to -1, no time limit is applied. Additionally, retention.ms configuration operates independently of "segment.ms" and "segment.bytes" configurations. Moreover, it triggers the rolling of new segment if the retention.ms condition is satisfied."##,
    ),
    topic(
        "segment.bytes",
        INT,
        Some("1073741824"),
        Some("log.segment.bytes"),
        Validator::AtLeast(1048576),
        r##"This configuration controls the segment file size for the log. Retention and cleaning is always done a file at a time so a larger segment size means fewer files but less granular control over retention."##,
    ),
    topic(
        "segment.index.bytes",
        INT,
        Some("10485760"),
        Some("log.index.size.max.bytes"),
        Validator::AtLeast(4),
        r##"This configuration controls the size of the index that maps offsets to file positions. We preallocate this index file and shrink it only after log rolls. You generally should not need to change this setting."##,
    ),
    topic(
        "segment.jitter.ms",
        LONG,
        Some("0"),
        Some("log.roll.jitter.ms"),
        Validator::AtLeast(0),
        r##"The maximum random jitter subtracted from the scheduled segment roll time to avoid thundering herds of segment rolling"##,
    ),
    topic(
        "segment.ms",
        LONG,
        Some("604800000"),
        Some("log.roll.ms"),
        Validator::AtLeast(1),
        r##"This configuration controls the period of time after which Kafka will force the log to roll even if the segment file isn't full to ensure that retention can delete or compact old data."##,
    ),
    topic(
        "unclean.leader.election.enable",
        BOOLEAN,
        Some("false"),
        Some("unclean.leader.election.enable"),
        NO_VALIDATOR,
        r##"Indicates whether to enable replicas not in the ISR set to be elected as leader as a last resort, even though doing so may result in data loss.<p>Note: In KRaft mode, when enabling this config dynamically, it needs to wait for the unclean leader electionthread to trigger election periodically (default is 5 minutes). Please run `kafka-leader-election.sh` with `unclean` option to trigger the unclean leader election immediately if needed.</p>"##,
    ),
];

/// The broker configs Ottla understands, with Kafka 4.1's types, defaults, validators and
/// documentation, sorted by name. Includes every broker synonym referenced from
/// [`TOPIC_CONFIGS`] (and every key of their synonym chains). `broker_synonym` is None for
/// all of these.
pub static BROKER_CONFIGS: &[ConfigDef] = &[
    broker(
        "advertised.listeners",
        STRING,
        None,
        NO_VALIDATOR,
        r##"Specifies the listener addresses that the Kafka brokers will advertise to clients and other brokers. The config is useful where the actual listener configuration <code>listeners</code> does not represent the addresses that clients should use to connect, such as in cloud environments. The addresses are published to and managed by the controller, the brokers pull these data from the controller as needed. In IaaS environments, this may need to be different from the interface to which the broker binds. If this is not set, the value for <code>listeners</code> will be used. Unlike <code>listeners</code>, it is not valid to advertise the 0.0.0.0 meta-address.<br> Also unlike <code>listeners</code>, there can be duplicated ports in this property, so that one listener can be configured to advertise another listener's address. This can be useful in some cases where external load balancers are used."##,
    ),
    broker(
        "alter.config.policy.class.name",
        CLASS,
        None,
        NO_VALIDATOR,
        r##"The alter configs policy class that should be used for validation. The class should implement the <code>org.apache.kafka.server.policy.AlterConfigPolicy</code> interface. <p>Note: This policy runs on the controller instead of the broker.</p>"##,
    ),
    broker(
        "authorizer.class.name",
        STRING,
        Some(""),
        NO_VALIDATOR,
        r##"The fully qualified name of a class that implements <code>org.apache.kafka.server.authorizer.Authorizer</code> interface, which is used by the broker for authorization."##,
    ),
    broker(
        "auto.create.topics.enable",
        BOOLEAN,
        Some("true"),
        NO_VALIDATOR,
        r##"Enable auto creation of topic on the server."##,
    ),
    broker(
        "auto.leader.rebalance.enable",
        BOOLEAN,
        Some("true"),
        NO_VALIDATOR,
        r##"Enables auto leader balancing. A background thread checks the distribution of partition leaders at regular intervals, configurable by leader.imbalance.check.interval.seconds. If the leader is imbalanced, leader rebalance to the preferred leader for partitions is triggered."##,
    ),
    broker(
        "background.threads",
        INT,
        Some("10"),
        Validator::AtLeast(1),
        r##"The number of threads to use for various background processing tasks"##,
    ),
    broker(
        "broker.heartbeat.interval.ms",
        INT,
        Some("2000"),
        NO_VALIDATOR,
        r##"The length of time in milliseconds between broker heartbeats."##,
    ),
    broker(
        "broker.id",
        INT,
        Some("-1"),
        NO_VALIDATOR,
        r##"The broker id for this server."##,
    ),
    broker(
        "broker.rack",
        STRING,
        None,
        NO_VALIDATOR,
        r##"Rack of the broker. This will be used in rack aware replication assignment for fault tolerance. Examples: <code>RACK1</code>, <code>us-east-1d</code>"##,
    ),
    broker(
        "broker.session.timeout.ms",
        INT,
        Some("9000"),
        NO_VALIDATOR,
        r##"The length of time in milliseconds that a broker lease lasts if no heartbeats are made."##,
    ),
    broker(
        "compression.gzip.level",
        INT,
        Some("-1"),
        Validator::BetweenOr(1, 9, -1),
        r##"The compression level to use if compression.type is set to 'gzip'."##,
    ),
    broker(
        "compression.lz4.level",
        INT,
        Some("9"),
        Validator::Between(1, 17),
        r##"The compression level to use if compression.type is set to 'lz4'."##,
    ),
    broker(
        "compression.type",
        STRING,
        Some("producer"),
        Validator::OneOf(COMPRESSION_TYPES),
        r##"Specify the final compression type for a given topic. This configuration accepts the standard compression codecs ('gzip', 'snappy', 'lz4', 'zstd'). It additionally accepts 'uncompressed' which is equivalent to no compression; and 'producer' which means retain the original compression codec set by the producer."##,
    ),
    broker(
        "compression.zstd.level",
        INT,
        Some("3"),
        Validator::Between(-131072, 22),
        r##"The compression level to use if compression.type is set to 'zstd'."##,
    ),
    broker(
        "connection.failed.authentication.delay.ms",
        INT,
        Some("100"),
        NO_VALIDATOR,
        r##"Connection close delay on failed authentication: this is the time (in milliseconds) by which connection close will be delayed on authentication failure. This must be configured to be less than connections.max.idle.ms to prevent connection timeout."##,
    ),
    broker(
        "connections.max.idle.ms",
        LONG,
        Some("600000"),
        NO_VALIDATOR,
        r##"Idle connections timeout: the server socket processor threads close the connections that idle more than this"##,
    ),
    broker(
        "connections.max.reauth.ms",
        LONG,
        Some("0"),
        NO_VALIDATOR,
        r##"When explicitly set to a positive number (the default is 0, not a positive number), a session lifetime that will not exceed the configured value will be communicated to v2.2.0 or later clients when they authenticate. The broker will disconnect any such connection that is not re-authenticated within the session lifetime and that is then subsequently used for any purpose other than re-authentication. Configuration names can optionally be prefixed with listener prefix and SASL mechanism name in lower-case. For example, listener.name.sasl_ssl.oauthbearer.connections.max.reauth.ms=3600000"##,
    ),
    broker(
        "controller.listener.names",
        STRING,
        None,
        NO_VALIDATOR,
        r##"A comma-separated list of the names of the listeners used by the controller. This is required when communicating with the controller quorum, the broker will always use the first listener in this list."##,
    ),
    broker(
        "controller.quorum.bootstrap.servers",
        LIST,
        Some(""),
        NO_VALIDATOR,
        r##"List of endpoints to use for bootstrapping the cluster metadata. The endpoints are specified in comma-separated list of <code>{host}:{port}</code> entries. For example: <code>localhost:9092,localhost:9093,localhost:9094</code>."##,
    ),
    broker(
        "controller.quorum.voters",
        LIST,
        Some(""),
        NO_VALIDATOR,
        r##"Map of id/endpoint information for the set of voters in a comma-separated list of <code>{id}@{host}:{port}</code> entries. For example: <code>1@localhost:9092,2@localhost:9093,3@localhost:9094</code>"##,
    ),
    broker(
        "create.topic.policy.class.name",
        CLASS,
        None,
        NO_VALIDATOR,
        r##"The create topic policy class that should be used for validation. The class should implement the <code>org.apache.kafka.server.policy.CreateTopicPolicy</code> interface. <p>Note: This policy runs on the controller instead of the broker.</p>"##,
    ),
    broker(
        "default.replication.factor",
        INT,
        Some("1"),
        NO_VALIDATOR,
        r##"The replication factor for automatically created topics, and for topics created with -1 as the replication factor"##,
    ),
    broker(
        "delegation.token.secret.key",
        PASSWORD,
        None,
        NO_VALIDATOR,
        r##"Secret key to generate and verify delegation tokens. The same key must be configured across all the brokers.  If using Kafka with KRaft, the key must also be set across all controllers.  If the key is not set or set to empty string, brokers will disable the delegation token support."##,
    ),
    broker(
        "delete.records.purgatory.purge.interval.requests",
        INT,
        Some("1"),
        NO_VALIDATOR,
        r##"The purge interval (in number of requests) of the delete records request purgatory"##,
    ),
    broker(
        "delete.topic.enable",
        BOOLEAN,
        Some("true"),
        NO_VALIDATOR,
        r##"When set to true, topics can be deleted by the admin client. When set to false, deletion requests will be explicitly rejected by the broker."##,
    ),
    broker(
        "early.start.listeners",
        STRING,
        None,
        NO_VALIDATOR,
        r##"A comma-separated list of listener names which may be started before the authorizer has finished initialization. This is useful when the authorizer is dependent on the cluster itself for bootstrapping, as is the case for the StandardAuthorizer (which stores ACLs in the metadata log.) By default, all listeners included in controller.listener.names will also be early start listeners. A listener should not appear in this list if it accepts external traffic."##,
    ),
    broker(
        "fetch.max.bytes",
        INT,
        Some("57671680"),
        Validator::AtLeast(1024),
        r##"The maximum number of bytes we will return for a fetch request. Must be at least 1024."##,
    ),
    broker(
        "fetch.purgatory.purge.interval.requests",
        INT,
        Some("1000"),
        NO_VALIDATOR,
        r##"The purge interval (in number of requests) of the fetch request purgatory"##,
    ),
    broker(
        "follower.replication.throttled.rate",
        LONG,
        Some("9223372036854775807"),
        NO_VALIDATOR,
        r##"A long representing the upper bound (bytes/sec) on replication traffic for followers enumerated in the property follower.replication.throttled.replicas (for each topic). It is suggested that the limit be kept above 1MB/s for accurate behaviour. (Kafka sets it dynamically only; Ottla also reads it from the file until dynamic broker configs exist.)"##,
    ),
    broker(
        "group.consumer.assignors",
        LIST,
        Some("uniform,range"),
        NO_VALIDATOR,
        r##"The server-side assignors as a list of either names for builtin assignors or full class names for customer assignors. The first one in the list is considered as the default assignor to be used in the case where the consumer does not specify an assignor. The supported builtin assignors are: uniform, range. (Ottla accepts the builtin names and Kafka's class names of the builtin assignors.)"##,
    ),
    broker(
        "group.consumer.heartbeat.interval.ms",
        INT,
        Some("5000"),
        Validator::AtLeast(1),
        r##"The heartbeat interval given to the members of a consumer group."##,
    ),
    broker(
        "group.consumer.max.heartbeat.interval.ms",
        INT,
        Some("15000"),
        Validator::AtLeast(1),
        r##"The maximum heartbeat interval for registered consumers."##,
    ),
    broker(
        "group.consumer.max.session.timeout.ms",
        INT,
        Some("60000"),
        Validator::AtLeast(1),
        r##"The maximum allowed session timeout for registered consumers."##,
    ),
    broker(
        "group.consumer.max.size",
        INT,
        Some("2147483647"),
        Validator::AtLeast(1),
        r##"The maximum number of consumers that a single consumer group can accommodate."##,
    ),
    broker(
        "group.consumer.migration.policy",
        STRING,
        Some("bidirectional"),
        NO_VALIDATOR,
        r##"The config that enables converting the non-empty classic group using the consumer embedded protocol to the non-empty consumer group using the consumer group protocol and vice versa; conversions of empty groups in both directions are always enabled regardless of this policy. bidirectional: both upgrade from classic group to consumer group and downgrade from consumer group to classic group are enabled, upgrade: only upgrade from classic group to consumer group is enabled, downgrade: only downgrade from consumer group to classic group is enabled, disabled: neither upgrade nor downgrade is enabled."##,
    ),
    broker(
        "group.consumer.min.heartbeat.interval.ms",
        INT,
        Some("5000"),
        Validator::AtLeast(1),
        r##"The minimum heartbeat interval for registered consumers."##,
    ),
    broker(
        "group.consumer.min.session.timeout.ms",
        INT,
        Some("45000"),
        Validator::AtLeast(1),
        r##"The minimum allowed session timeout for registered consumers."##,
    ),
    broker(
        "group.consumer.session.timeout.ms",
        INT,
        Some("45000"),
        Validator::AtLeast(1),
        r##"The timeout to detect client failures when using the consumer group protocol."##,
    ),
    broker(
        "group.coordinator.rebalance.protocols",
        LIST,
        Some("classic,consumer,streams"),
        Validator::ListOf(&["consumer", "classic", "share", "streams"]),
        r##"The list of enabled rebalance protocols.The streams rebalance protocol is in early access and therefore must not be used in production."##,
    ),
    broker(
        "group.coordinator.threads",
        INT,
        Some("4"),
        Validator::AtLeast(1),
        r##"The number of threads used by the group coordinator."##,
    ),
    broker(
        "group.initial.rebalance.delay.ms",
        INT,
        Some("3000"),
        NO_VALIDATOR,
        r##"The amount of time the group coordinator will wait for more consumers to join a new group before performing the first rebalance. A longer delay means potentially fewer rebalances, but increases the time until processing begins."##,
    ),
    broker(
        "group.max.session.timeout.ms",
        INT,
        Some("1800000"),
        NO_VALIDATOR,
        r##"The maximum allowed session timeout for registered consumers. Longer timeouts give consumers more time to process messages in between heartbeats at the cost of a longer time to detect failures."##,
    ),
    broker(
        "group.max.size",
        INT,
        Some(INT_MAX),
        Validator::AtLeast(1),
        r##"The maximum number of consumers that a single consumer group can accommodate."##,
    ),
    broker(
        "group.min.session.timeout.ms",
        INT,
        Some("6000"),
        NO_VALIDATOR,
        r##"The minimum allowed session timeout for registered consumers. Shorter timeouts result in quicker failure detection at the cost of more frequent consumer heartbeating, which can overwhelm broker resources."##,
    ),
    broker(
        "inter.broker.listener.name",
        STRING,
        None,
        NO_VALIDATOR,
        r##"Name of listener used for communication between brokers. If this is unset, the listener name is defined by security.inter.broker.protocol. It is an error to set this and security.inter.broker.protocol properties at the same time."##,
    ),
    broker(
        "leader.imbalance.check.interval.seconds",
        LONG,
        Some("300"),
        Validator::AtLeast(1),
        r##"The frequency with which the partition rebalance check is triggered by the controller"##,
    ),
    broker(
        "leader.replication.throttled.rate",
        LONG,
        Some("9223372036854775807"),
        NO_VALIDATOR,
        r##"A long representing the upper bound (bytes/sec) on replication traffic for leaders enumerated in the property leader.replication.throttled.replicas (for each topic). It is suggested that the limit be kept above 1MB/s for accurate behaviour. (Kafka sets it dynamically only; Ottla also reads it from the file until dynamic broker configs exist.)"##,
    ),
    broker(
        "listener.security.protocol.map",
        STRING,
        Some("SASL_SSL:SASL_SSL,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT"),
        NO_VALIDATOR,
        r##"Map between listener names and security protocols. This must be defined for the same security protocol to be usable in more than one port or IP. For example, internal and external traffic can be separated even if SSL is required for both. Concretely, the user could define listeners with names INTERNAL and EXTERNAL and this property as: <code>INTERNAL:SSL,EXTERNAL:SSL</code>. As shown, key and value are separated by a colon and map entries are separated by commas. Each listener name should only appear once in the map. Different security (SSL and SASL) settings can be configured for each listener by adding a normalised prefix (the listener name is lowercased) to the config name. For example, to set a different keystore for the INTERNAL listener, a config with name <code>listener.name.internal.ssl.keystore.location</code> would be set. If the config for the listener name is not set, the config will fallback to the generic config (i.e. <code>ssl.keystore.location</code>). Note that in KRaft a default mapping from the listener names defined by <code>controller.listener.names</code> to PLAINTEXT is assumed if no explicit mapping is provided and no other security protocol is in use."##,
    ),
    broker(
        "listeners",
        STRING,
        Some("PLAINTEXT://:9092"),
        NO_VALIDATOR,
        r##"Listener List - Comma-separated list of URIs we will listen on and the listener names. If the listener name is not a security protocol, <code>listener.security.protocol.map</code> must also be set.<br> Listener names and port numbers must be unique unless one listener is an IPv4 address and the other listener is an IPv6 address (for the same port).<br> Specify hostname as 0.0.0.0 to bind to all interfaces.<br> Leave hostname empty to bind to default interface.<br> Examples of legal listener lists:<br> <code>PLAINTEXT://myhost:9092,SSL://:9091</code><br> <code>CLIENT://0.0.0.0:9092,REPLICATION://localhost:9093</code><br> <code>PLAINTEXT://127.0.0.1:9092,SSL://[::1]:9092</code><br>"##,
    ),
    broker(
        "log.cleaner.backoff.ms",
        LONG,
        Some("15000"),
        Validator::AtLeast(0),
        r##"The amount of time to sleep when there are no logs to clean"##,
    ),
    broker(
        "log.cleaner.dedupe.buffer.size",
        LONG,
        Some("134217728"),
        NO_VALIDATOR,
        r##"The total memory used for log deduplication across all cleaner threads"##,
    ),
    broker(
        "log.cleaner.delete.retention.ms",
        LONG,
        Some("86400000"),
        Validator::AtLeast(0),
        r##"The amount of time to retain tombstone message markers for log compacted topics. This setting also gives a bound on the time in which a consumer must complete a read if they begin from offset 0 to ensure that they get a valid snapshot of the final stage (otherwise  tombstones messages may be collected before a consumer completes their scan)."##,
    ),
    broker(
        "log.cleaner.enable",
        BOOLEAN,
        Some("true"),
        NO_VALIDATOR,
        r##"This configuration has been deprecated and will be removed in Kafka 5.0. Users should not set it to false to prepare for its future removal. Enable the log cleaner process to run on the server. Should be enabled if using any topics with a cleanup.policy=compact including the internal offsets topic. If disabled those topics will not be compacted and continually grow in size."##,
    ),
    broker(
        "log.cleaner.io.buffer.load.factor",
        DOUBLE,
        Some("0.9"),
        NO_VALIDATOR,
        r##"Log cleaner dedupe buffer load factor. The percentage full the dedupe buffer can become. A higher value will allow more log to be cleaned at once but will lead to more hash collisions"##,
    ),
    broker(
        "log.cleaner.io.buffer.size",
        INT,
        Some("524288"),
        Validator::AtLeast(0),
        r##"The total memory used for log cleaner I/O buffers across all cleaner threads"##,
    ),
    broker(
        "log.cleaner.io.max.bytes.per.second",
        DOUBLE,
        Some("1.7976931348623157E308"),
        NO_VALIDATOR,
        r##"The log cleaner will be throttled so that the sum of its read and write i/o will be less than this value on average"##,
    ),
    broker(
        "log.cleaner.max.compaction.lag.ms",
        LONG,
        Some(LONG_MAX),
        Validator::AtLeast(1),
        r##"The maximum time a message will remain ineligible for compaction in the log. Only applicable for logs that are being compacted."##,
    ),
    broker(
        "log.cleaner.min.cleanable.ratio",
        DOUBLE,
        Some("0.5"),
        Validator::DoubleBetween(0.0, 1.0),
        r##"The minimum ratio of dirty log to total log for a log to eligible for cleaning. If the log.cleaner.max.compaction.lag.ms or the log.cleaner.min.compaction.lag.ms configurations are also specified, then the log compactor considers the log eligible for compaction as soon as either: (i) the dirty ratio threshold has been met and the log has had dirty (uncompacted) records for at least the log.cleaner.min.compaction.lag.ms duration, or (ii) if the log has had dirty (uncompacted) records for at most the log.cleaner.max.compaction.lag.ms period."##,
    ),
    broker(
        "log.cleaner.min.compaction.lag.ms",
        LONG,
        Some("0"),
        Validator::AtLeast(0),
        r##"The minimum time a message will remain uncompacted in the log. Only applicable for logs that are being compacted."##,
    ),
    broker(
        "log.cleaner.threads",
        INT,
        Some("1"),
        Validator::AtLeast(0),
        r##"The number of background threads to use for log cleaning"##,
    ),
    broker(
        "log.cleanup.policy",
        LIST,
        Some("delete"),
        Validator::ListOf(CLEANUP_POLICIES),
        r##"The default cleanup policy for segments beyond the retention window. A comma separated list of valid policies."##,
    ),
    broker(
        "log.dir",
        STRING,
        Some("/tmp/kafka-logs"),
        NO_VALIDATOR,
        r##"The directory in which the log data is kept (supplemental for log.dirs property)"##,
    ),
    broker(
        "log.dir.failure.timeout.ms",
        LONG,
        Some("30000"),
        Validator::AtLeast(1),
        r##"If the broker is unable to successfully communicate to the controller that some log directory has failed for longer than this time, the broker will fail and shut down."##,
    ),
    broker(
        "log.dirs",
        STRING,
        None,
        NO_VALIDATOR,
        r##"A comma-separated list of the directories where the log data is stored. If not set, the value in log.dir is used."##,
    ),
    broker(
        "log.flush.interval.messages",
        LONG,
        Some(LONG_MAX),
        Validator::AtLeast(1),
        r##"The number of messages accumulated on a log partition before messages are flushed to disk."##,
    ),
    broker(
        "log.flush.interval.ms",
        LONG,
        None,
        NO_VALIDATOR,
        r##"The maximum time in ms that a message in any topic is kept in memory before flushed to disk. If not set, the value in log.flush.scheduler.interval.ms is used"##,
    ),
    broker(
        "log.flush.offset.checkpoint.interval.ms",
        INT,
        Some("60000"),
        Validator::AtLeast(0),
        r##"The frequency with which we update the persistent record of the last flush which acts as the log recovery point."##,
    ),
    broker(
        "log.flush.scheduler.interval.ms",
        LONG,
        Some(LONG_MAX),
        NO_VALIDATOR,
        r##"The frequency in ms that the log flusher checks whether any log needs to be flushed to disk"##,
    ),
    broker(
        "log.flush.start.offset.checkpoint.interval.ms",
        INT,
        Some("60000"),
        Validator::AtLeast(0),
        r##"The frequency with which we update the persistent record of log start offset"##,
    ),
    broker(
        "log.index.interval.bytes",
        INT,
        Some("4096"),
        Validator::AtLeast(0),
        r##"The interval with which we add an entry to the offset index."##,
    ),
    broker(
        "log.index.size.max.bytes",
        INT,
        Some("10485760"),
        Validator::AtLeast(4),
        r##"The maximum size in bytes of the offset index"##,
    ),
    broker(
        "log.local.retention.bytes",
        LONG,
        Some("-2"),
        Validator::AtLeast(-2),
        r##"The maximum size of local log segments that can grow for a partition before it gets eligible for deletion. Default value is -2, it represents `log.retention.bytes` value to be used. The effective value should always be less than or equal to `log.retention.bytes` value."##,
    ),
    broker(
        "log.local.retention.ms",
        LONG,
        Some("-2"),
        Validator::AtLeast(-2),
        r##"The number of milliseconds to keep the local log segments before it gets eligible for deletion. Default value is -2, it represents `log.retention.ms` value is to be used. The effective value should always be less than or equal to `log.retention.ms` value."##,
    ),
    broker(
        "log.message.timestamp.after.max.ms",
        LONG,
        Some("3600000"),
        Validator::AtLeast(0),
        r##"This configuration sets the allowable timestamp difference between the message timestamp and the broker's timestamp. The message timestamp can be later than or equal to the broker's timestamp, with the maximum allowable difference determined by the value set in this configuration. If log.message.timestamp.type=CreateTime, the message will be rejected if the difference in timestamps exceeds this specified threshold. This configuration is ignored if log.message.timestamp.type=LogAppendTime."##,
    ),
    broker(
        "log.message.timestamp.before.max.ms",
        LONG,
        Some(LONG_MAX),
        Validator::AtLeast(0),
        r##"This configuration sets the allowable timestamp difference between the broker's timestamp and the message timestamp. The message timestamp can be earlier than or equal to the broker's timestamp, with the maximum allowable difference determined by the value set in this configuration. If log.message.timestamp.type=CreateTime, the message will be rejected if the difference in timestamps exceeds this specified threshold. This configuration is ignored if log.message.timestamp.type=LogAppendTime."##,
    ),
    broker(
        "log.message.timestamp.type",
        STRING,
        Some("CreateTime"),
        Validator::OneOf(TIMESTAMP_TYPES),
        r##"Define whether the timestamp in the message is message create time or log append time. The value should be either <code>CreateTime</code> or <code>LogAppendTime</code>."##,
    ),
    broker(
        "log.preallocate",
        BOOLEAN,
        Some("false"),
        NO_VALIDATOR,
        r##"Should pre allocate file when create new segment? If you are using Kafka on Windows, you probably need to set it to true."##,
    ),
    broker(
        "log.retention.bytes",
        LONG,
        Some("-1"),
        NO_VALIDATOR,
        r##"The maximum size of the log before deleting it"##,
    ),
    broker(
        "log.retention.check.interval.ms",
        LONG,
        Some("300000"),
        Validator::AtLeast(1),
        r##"The frequency in milliseconds that the log cleaner checks whether any log is eligible for deletion"##,
    ),
    broker(
        "log.retention.hours",
        INT,
        Some("168"),
        NO_VALIDATOR,
        r##"The number of hours to keep a log file before deleting it (in hours), tertiary to log.retention.ms property"##,
    ),
    broker(
        "log.retention.minutes",
        INT,
        None,
        NO_VALIDATOR,
        r##"The number of minutes to keep a log file before deleting it (in minutes), secondary to log.retention.ms property. If not set, the value in log.retention.hours is used"##,
    ),
    broker(
        "log.retention.ms",
        LONG,
        None,
        NO_VALIDATOR,
        r##"The number of milliseconds to keep a log file before deleting it (in milliseconds), If not set, the value in log.retention.minutes is used. If set to -1, no time limit is applied."##,
    ),
    broker(
        "log.roll.hours",
        INT,
        Some("168"),
        Validator::AtLeast(1),
        r##"The maximum time before a new log segment is rolled out (in hours), secondary to log.roll.ms property"##,
    ),
    broker(
        "log.roll.jitter.hours",
        INT,
        Some("0"),
        Validator::AtLeast(0),
        r##"The maximum jitter to subtract from logRollTimeMillis (in hours), secondary to log.roll.jitter.ms property"##,
    ),
    broker(
        "log.roll.jitter.ms",
        LONG,
        None,
        NO_VALIDATOR,
        r##"The maximum jitter to subtract from logRollTimeMillis (in milliseconds). If not set, the value in log.roll.jitter.hours is used"##,
    ),
    broker(
        "log.roll.ms",
        LONG,
        None,
        NO_VALIDATOR,
        r##"The maximum time before a new log segment is rolled out (in milliseconds). If not set, the value in log.roll.hours is used"##,
    ),
    broker(
        "log.segment.bytes",
        INT,
        Some("1073741824"),
        Validator::AtLeast(1048576),
        r##"The maximum size of a single log file"##,
    ),
    broker(
        "log.segment.delete.delay.ms",
        LONG,
        Some("60000"),
        Validator::AtLeast(0),
        r##"The amount of time to wait before deleting a file from the filesystem. If the value is 0 and there is no file to delete, the system will wait 1 millisecond. Low value will cause busy waiting"##,
    ),
    broker(
        "max.connection.creation.rate",
        INT,
        Some(INT_MAX),
        Validator::AtLeast(0),
        r##"The maximum connection creation rate we allow in the broker at any time. Listener-level limits may also be configured by prefixing the config name with the listener prefix, for example, <code>listener.name.internal.max.connection.creation.rate</code>.Broker-wide connection rate limit should be configured based on broker capacity while listener limits should be configured based on application requirements. New connections will be throttled if either the listener or the broker limit is reached, with the exception of inter-broker listener. Connections on the inter-broker listener will be throttled only when the listener-level rate limit is reached."##,
    ),
    broker(
        "max.connections",
        INT,
        Some(INT_MAX),
        Validator::AtLeast(0),
        r##"The maximum number of connections we allow in the broker at any time. This limit is applied in addition to any per-ip limits configured using max.connections.per.ip. Listener-level limits may also be configured by prefixing the config name with the listener prefix, for example, <code>listener.name.internal.max.connections.per.ip</code>. Broker-wide limit should be configured based on broker capacity while listener limits should be configured based on application requirements. New connections are blocked if either the listener or broker limit is reached. Connections on the inter-broker listener are permitted even if broker-wide limit is reached. The least recently used connection on another listener will be closed in this case."##,
    ),
    broker(
        "max.connections.per.ip",
        INT,
        Some(INT_MAX),
        Validator::AtLeast(0),
        r##"The maximum number of connections we allow from each ip address. This can be set to 0 if there are overrides configured using max.connections.per.ip.overrides property. New connections from the ip address are dropped if the limit is reached."##,
    ),
    broker(
        "max.connections.per.ip.overrides",
        STRING,
        Some(""),
        NO_VALIDATOR,
        r##"A comma-separated list of per-ip or hostname overrides to the default maximum number of connections. An example value is "hostName:100,127.0.0.1:200""##,
    ),
    broker(
        "max.incremental.fetch.session.cache.slots",
        INT,
        Some("1000"),
        Validator::AtLeast(0),
        r##"The maximum number of total incremental fetch sessions that we will maintain. FetchSessionCache is sharded into 8 shards and the limit is equally divided among all shards. Sessions are allocated to each shard in round-robin. Only entries within a shard are considered eligible for eviction."##,
    ),
    broker(
        "message.max.bytes",
        INT,
        Some("1048588"),
        Validator::AtLeast(0),
        r##"The largest record batch size allowed by Kafka (after compression if compression is enabled).This can be set per topic with the topic level <code>max.message.bytes</code> config."##,
    ),
    broker(
        "metadata.log.dir",
        STRING,
        None,
        NO_VALIDATOR,
        r##"This configuration determines where we put the metadata log. If it is not set, the metadata log is placed in the first log directory from log.dirs."##,
    ),
    broker(
        "metric.reporters",
        LIST,
        Some("org.apache.kafka.common.metrics.JmxReporter"),
        NO_VALIDATOR,
        r##"A list of classes to use as metrics reporters. Implementing the <code>org.apache.kafka.common.metrics.MetricsReporter</code> interface allows plugging in classes that will be notified of new metric creation. When custom reporters are set and <code>org.apache.kafka.common.metrics.JmxReporter</code> is needed, it has to be explicitly added to the list."##,
    ),
    broker(
        "min.insync.replicas",
        INT,
        Some("1"),
        Validator::AtLeast(1),
        r##"Specifies the <i>minimum</i> number of in-sync replicas (including the leader) required for a write to succeed when a producer sets <code>acks</code> to "all" (or "-1"). In the <code>acks=all</code> case, every in-sync replica must acknowledge a write for it to be considered successful. E.g., if a topic has <code>replication.factor</code> of 3 and the ISR set includes all three replicas, then all three replicas must acknowledge an <code>acks=all</code> write for it to succeed, even if <code>min.insync.replicas</code> happens to be less than 3. If <code>acks=all</code> and the current ISR set contains fewer than <code>min.insync.replicas</code> members, then the producer will raise an exception (either <code>NotEnoughReplicas</code> or <code>NotEnoughReplicasAfterAppend</code>).<br> Regardless of the <code>acks</code> setting, the messages will not be visible to the consumers until they are replicated to all in-sync replicas and the <code>min.insync.replicas</code> condition is met.<br> When used together, <code>min.insync.replicas</code> and <code>acks</code> allow you to enforce greater durability guarantees. A typical scenario would be to create a topic with a replication factor of 3, set <code>min.insync.replicas</code> to 2, and produce with <code>acks</code> of "all". This ensures that a majority of replicas must persist a write before it's considered successful by the producer and it's visible to consumers.<p>Note that when the Eligible Leader Replicas feature is enabled, the semantics of this config changes. Please refer to <a href="#eligible_leader_replicas">the ELR section</a> for more info.</p>"##,
    ),
    broker(
        "node.id",
        INT,
        None,
        Validator::AtLeast(0),
        r##"The node ID associated with the roles this process is playing when <code>process.roles</code> is non-empty. This is required configuration when running in KRaft mode."##,
    ),
    broker(
        "num.io.threads",
        INT,
        Some("8"),
        Validator::AtLeast(1),
        r##"The number of threads that the server uses for processing requests, which may include disk I/O"##,
    ),
    broker(
        "num.network.threads",
        INT,
        Some("3"),
        Validator::AtLeast(1),
        r##"The number of threads that the server uses for receiving requests from the network and sending responses to the network. Noted: each listener (except for controller listener) creates its own thread pool."##,
    ),
    broker(
        "num.partitions",
        INT,
        Some("1"),
        Validator::AtLeast(1),
        r##"The default number of log partitions per topic"##,
    ),
    broker(
        "num.recovery.threads.per.data.dir",
        INT,
        Some("2"),
        Validator::AtLeast(1),
        r##"The number of threads per data directory to be used for log recovery at startup and flushing at shutdown"##,
    ),
    broker(
        "num.replica.alter.log.dirs.threads",
        INT,
        None,
        NO_VALIDATOR,
        r##"The number of threads that can move replicas between log directories, which may include disk I/O. The default value is equal to the number of directories specified in the <code>log.dir</code> or <code>log.dirs</code> configuration property."##,
    ),
    broker(
        "num.replica.fetchers",
        INT,
        Some("1"),
        NO_VALIDATOR,
        r##"Number of fetcher threads used to replicate records from each source broker. The total number of fetchers on each broker is bound by <code>num.replica.fetchers</code> multiplied by the number of brokers in the cluster.Increasing this value can increase the degree of I/O parallelism in the follower and leader broker at the cost of higher CPU and memory utilization."##,
    ),
    broker(
        "offset.metadata.max.bytes",
        INT,
        Some("4096"),
        NO_VALIDATOR,
        r##"The maximum size for a metadata entry associated with an offset commit."##,
    ),
    broker(
        "offsets.commit.timeout.ms",
        INT,
        Some("5000"),
        Validator::AtLeast(1),
        r##"Offset commit will be delayed until all replicas for the offsets topic receive the commit or this timeout is reached. This is similar to the producer request timeout. This is applied to all the writes made by the coordinator."##,
    ),
    broker(
        "offsets.load.buffer.size",
        INT,
        Some("5242880"),
        Validator::AtLeast(1),
        r##"Batch size for reading from the offsets segments when loading group metadata  into the cache (soft-limit, overridden if records are too large)."##,
    ),
    broker(
        "offsets.retention.check.interval.ms",
        LONG,
        Some("600000"),
        Validator::AtLeast(1),
        r##"Frequency at which to check for stale offsets"##,
    ),
    broker(
        "offsets.retention.minutes",
        INT,
        Some("10080"),
        Validator::AtLeast(1),
        r##"For subscribed consumers, committed offset of a specific partition will be expired and discarded when 1) this retention period has elapsed after the consumer group loses all its consumers (i.e. becomes empty); 2) this retention period has elapsed since the last time an offset is committed for the partition and the group is no longer subscribed to the corresponding topic. For standalone consumers (using manual assignment), offsets will be expired after this retention period has elapsed since the time of last commit. Note that when a group is deleted via the delete-group request, its committed offsets will also be deleted without extra retention period; also when a topic is deleted via the delete-topic request, upon propagated metadata update any group's committed offsets for that topic will also be deleted without extra retention period."##,
    ),
    broker(
        "offsets.topic.compression.codec",
        INT,
        Some("0"),
        NO_VALIDATOR,
        r##"Compression codec for the offsets topic - compression may be used to achieve "atomic" commits."##,
    ),
    broker(
        "offsets.topic.num.partitions",
        INT,
        Some("50"),
        Validator::AtLeast(1),
        r##"The number of partitions for the offset commit topic (should not change after deployment)."##,
    ),
    broker(
        "offsets.topic.replication.factor",
        SHORT,
        Some("3"),
        Validator::AtLeast(1),
        r##"The replication factor for the offsets topic (set higher to ensure availability). Internal topic creation will fail until the cluster size meets this replication factor requirement."##,
    ),
    broker(
        "offsets.topic.segment.bytes",
        INT,
        Some("104857600"),
        Validator::AtLeast(1),
        r##"The offsets topic segment bytes should be kept relatively small in order to facilitate faster log compaction and cache loads."##,
    ),
    broker(
        "principal.builder.class",
        CLASS,
        Some("org.apache.kafka.common.security.authenticator.DefaultKafkaPrincipalBuilder"),
        NO_VALIDATOR,
        r##"The fully qualified name of a class that implements the KafkaPrincipalBuilder interface, which is used to build the KafkaPrincipal object used during authorization. If no principal builder is defined, the default behavior depends on the security protocol in use. For SSL authentication,  the principal will be derived using the rules defined by <code>ssl.principal.mapping.rules</code> applied on the distinguished name from the client certificate if one is provided; otherwise, if client authentication is not required, the principal name will be ANONYMOUS. For SASL authentication, the principal will be derived using the rules defined by <code>sasl.kerberos.principal.to.local.rules</code> if GSSAPI is in use, and the SASL authentication ID for other mechanisms. For PLAINTEXT, the principal will be ANONYMOUS. Note that custom implementations of <code>KafkaPrincipalBuilder</code> is required to implement <code>KafkaPrincipalSerde</code> interface, otherwise brokers will not be able to forward requests to the controller."##,
    ),
    broker(
        "process.roles",
        LIST,
        None,
        Validator::ListOf(&["broker", "controller"]),
        r##"The roles that this process plays: 'broker', 'controller', or 'broker,controller' if it is both. "##,
    ),
    broker(
        "producer.id.expiration.ms",
        INT,
        Some("86400000"),
        Validator::AtLeast(1),
        r##"The time in ms that a topic partition leader will wait before expiring producer IDs. Producer IDs will not expire while a transaction associated to them is still ongoing. Note that producer IDs may expire sooner if the last write from the producer ID is deleted due to the topic's retention settings. Setting this value the same or higher than <code>delivery.timeout.ms</code> can help prevent expiration during retries and protect against message duplication, but the default should be reasonable for most use cases."##,
    ),
    broker(
        "producer.purgatory.purge.interval.requests",
        INT,
        Some("1000"),
        NO_VALIDATOR,
        r##"The purge interval (in number of requests) of the producer request purgatory"##,
    ),
    broker(
        "queued.max.request.bytes",
        LONG,
        Some("-1"),
        NO_VALIDATOR,
        r##"The number of queued bytes allowed before no more requests are read"##,
    ),
    broker(
        "queued.max.requests",
        INT,
        Some("500"),
        Validator::AtLeast(1),
        r##"The number of queued requests allowed for data-plane, before blocking the network threads"##,
    ),
    broker(
        "remote.log.storage.system.enable",
        BOOLEAN,
        Some("false"),
        NO_VALIDATOR,
        r##"Whether to enable tiered storage functionality in a broker or not. When it is true broker starts all the services required for the tiered storage functionality."##,
    ),
    broker(
        "replica.fetch.backoff.ms",
        INT,
        Some("1000"),
        Validator::AtLeast(0),
        r##"The amount of time to sleep when fetch partition error occurs."##,
    ),
    broker(
        "replica.fetch.max.bytes",
        INT,
        Some("1048576"),
        Validator::AtLeast(0),
        r##"The number of bytes of messages to attempt to fetch for each partition. This is not an absolute maximum, if the first record batch in the first non-empty partition of the fetch is larger than this value, the record batch will still be returned to ensure that progress can be made. The maximum record batch size accepted by the broker is defined via <code>message.max.bytes</code> (broker config) or <code>max.message.bytes</code> (topic config)."##,
    ),
    broker(
        "replica.fetch.min.bytes",
        INT,
        Some("1"),
        NO_VALIDATOR,
        r##"Minimum bytes expected for each fetch response. If not enough bytes, wait up to <code>replica.fetch.wait.max.ms</code> (broker config)."##,
    ),
    broker(
        "replica.fetch.response.max.bytes",
        INT,
        Some("10485760"),
        Validator::AtLeast(0),
        r##"Maximum bytes expected for the entire fetch response. Records are fetched in batches, and if the first record batch in the first non-empty partition of the fetch is larger than this value, the record batch will still be returned to ensure that progress can be made. As such, this is not an absolute maximum. The maximum record batch size accepted by the broker is defined via <code>message.max.bytes</code> (broker config) or <code>max.message.bytes</code> (topic config)."##,
    ),
    broker(
        "replica.fetch.wait.max.ms",
        INT,
        Some("500"),
        NO_VALIDATOR,
        r##"The maximum wait time for each fetcher request issued by follower replicas. This value should always be less than the replica.lag.time.max.ms at all times to prevent frequent shrinking of ISR for low throughput topics"##,
    ),
    broker(
        "replica.high.watermark.checkpoint.interval.ms",
        LONG,
        Some("5000"),
        NO_VALIDATOR,
        r##"The frequency with which the high watermark is saved out to disk"##,
    ),
    broker(
        "replica.lag.time.max.ms",
        LONG,
        Some("30000"),
        NO_VALIDATOR,
        r##"If a follower hasn't sent any fetch requests or hasn't consumed up to the leader's log end offset for at least this time, the leader will remove the follower from ISR"##,
    ),
    broker(
        "replica.selector.class",
        STRING,
        None,
        NO_VALIDATOR,
        r##"The fully qualified class name that implements ReplicaSelector. This is used by the broker to find the preferred read replica. By default, we use an implementation that returns the leader."##,
    ),
    broker(
        "replica.socket.receive.buffer.bytes",
        INT,
        Some("65536"),
        NO_VALIDATOR,
        r##"The socket receive buffer for network requests to the leader for replicating data"##,
    ),
    broker(
        "replica.socket.timeout.ms",
        INT,
        Some("30000"),
        NO_VALIDATOR,
        r##"The socket timeout for network requests. Its value should be at least replica.fetch.wait.max.ms"##,
    ),
    broker(
        "replication.quota.window.num",
        INT,
        Some("11"),
        NO_VALIDATOR,
        r##"The number of samples to retain in memory for replication quotas"##,
    ),
    broker(
        "replication.quota.window.size.seconds",
        INT,
        Some("1"),
        NO_VALIDATOR,
        r##"The time span of each sample for replication quotas"##,
    ),
    broker(
        "request.timeout.ms",
        INT,
        Some("30000"),
        NO_VALIDATOR,
        r##"The configuration controls the maximum amount of time the client will wait for the response of a request. If the response is not received before the timeout elapses the client will resend the request if necessary or fail the request if retries are exhausted."##,
    ),
    broker(
        "sasl.enabled.mechanisms",
        LIST,
        Some("GSSAPI"),
        NO_VALIDATOR,
        r##"The list of SASL mechanisms enabled in the Kafka server. The list may contain any mechanism for which a security provider is available. Only GSSAPI is enabled by default."##,
    ),
    broker(
        "sasl.jaas.config",
        PASSWORD,
        None,
        NO_VALIDATOR,
        r##"JAAS login context parameters for SASL connections in the format used by JAAS configuration files. JAAS configuration file format is described <a href="https://docs.oracle.com/javase/8/docs/technotes/guides/security/jgss/tutorials/LoginConfigFile.html">here</a>. The format for the value is: <code>loginModuleClass controlFlag (optionName=optionValue)*;</code>. For brokers, the config must be prefixed with listener prefix and SASL mechanism name in lower-case. For example, listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=com.example.ScramLoginModule required;"##,
    ),
    broker(
        "sasl.mechanism.controller.protocol",
        STRING,
        Some("GSSAPI"),
        NO_VALIDATOR,
        r##"SASL mechanism used for communication with controllers. Default is GSSAPI."##,
    ),
    broker(
        "sasl.mechanism.inter.broker.protocol",
        STRING,
        Some("GSSAPI"),
        NO_VALIDATOR,
        r##"SASL mechanism used for inter-broker communication. Default is GSSAPI."##,
    ),
    broker(
        "sasl.server.max.receive.size",
        INT,
        Some("524288"),
        NO_VALIDATOR,
        r##"The maximum receive size allowed before and during initial SASL authentication. Default receive size is 512KB. GSSAPI limits requests to 64K, but we allow upto 512KB by default for custom SASL mechanisms. In practice, PLAIN, SCRAM and OAUTH mechanisms can use much smaller limits."##,
    ),
    broker(
        "security.inter.broker.protocol",
        STRING,
        Some("PLAINTEXT"),
        Validator::OneOf(&["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]),
        r##"Security protocol used to communicate between brokers. It is an error to set this and inter.broker.listener.name properties at the same time."##,
    ),
    broker(
        "socket.listen.backlog.size",
        INT,
        Some("50"),
        Validator::AtLeast(1),
        r##"The maximum number of pending connections on the socket. In Linux, you may also need to configure <code>somaxconn</code> and <code>tcp_max_syn_backlog</code> kernel parameters accordingly to make the configuration takes effect."##,
    ),
    broker(
        "socket.receive.buffer.bytes",
        INT,
        Some("102400"),
        NO_VALIDATOR,
        r##"The SO_RCVBUF buffer of the socket server sockets. If the value is -1, the OS default will be used."##,
    ),
    broker(
        "socket.request.max.bytes",
        INT,
        Some("104857600"),
        Validator::AtLeast(1),
        r##"The maximum number of bytes in a socket request"##,
    ),
    broker(
        "socket.send.buffer.bytes",
        INT,
        Some("102400"),
        NO_VALIDATOR,
        r##"The SO_SNDBUF buffer of the socket server sockets. If the value is -1, the OS default will be used."##,
    ),
    broker(
        "ssl.cipher.suites",
        LIST,
        Some(""),
        NO_VALIDATOR,
        r##"A list of cipher suites. This is a named combination of authentication, encryption, MAC and key exchange algorithm used to negotiate the security settings for a network connection using TLS or SSL network protocol. By default all the available cipher suites are supported."##,
    ),
    broker(
        "ssl.client.auth",
        STRING,
        Some("none"),
        Validator::OneOf(&["required", "requested", "none"]),
        r##"Configures kafka broker to request client authentication. The following settings are common:  <ul> <li><code>ssl.client.auth=required</code> If set to required client authentication is required. <li><code>ssl.client.auth=requested</code> This means client authentication is optional. unlike required, if this option is set client can choose not to provide authentication information about itself <li><code>ssl.client.auth=none</code> This means client authentication is not needed.</ul>"##,
    ),
    broker(
        "ssl.enabled.protocols",
        LIST,
        Some("TLSv1.2,TLSv1.3"),
        NO_VALIDATOR,
        r##"The list of protocols enabled for SSL connections. The default is 'TLSv1.2,TLSv1.3'. This means that clients and servers will prefer TLSv1.3 if both support it and fallback to TLSv1.2 otherwise (assuming both support at least TLSv1.2). This default should be fine for most use cases. Also see the config documentation for `ssl.protocol` to understand how it can impact the TLS version negotiation behavior."##,
    ),
    broker(
        "ssl.endpoint.identification.algorithm",
        STRING,
        Some("https"),
        NO_VALIDATOR,
        r##"The endpoint identification algorithm to validate server hostname using server certificate."##,
    ),
    broker(
        "ssl.key.password",
        PASSWORD,
        None,
        NO_VALIDATOR,
        r##"The password of the private key in the key store file or the PEM key specified in 'ssl.keystore.key'."##,
    ),
    broker(
        "ssl.keystore.certificate.chain",
        PASSWORD,
        None,
        NO_VALIDATOR,
        r##"Certificate chain in the format specified by 'ssl.keystore.type'. Default SSL engine factory supports only PEM format with a list of X.509 certificates"##,
    ),
    broker(
        "ssl.keystore.key",
        PASSWORD,
        None,
        NO_VALIDATOR,
        r##"Private key in the format specified by 'ssl.keystore.type'. Default SSL engine factory supports only PEM format with PKCS#8 keys. If the key is encrypted, key password must be specified using 'ssl.key.password'"##,
    ),
    broker(
        "ssl.keystore.location",
        STRING,
        None,
        NO_VALIDATOR,
        r##"The location of the key store file. This is optional for client and can be used for two-way authentication for client."##,
    ),
    broker(
        "ssl.keystore.password",
        PASSWORD,
        None,
        NO_VALIDATOR,
        r##"The store password for the key store file. This is optional for client and only needed if 'ssl.keystore.location' is configured. Key store password is not supported for PEM format."##,
    ),
    broker(
        "ssl.keystore.type",
        STRING,
        Some("JKS"),
        NO_VALIDATOR,
        r##"The file format of the key store file. This is optional for client. The values currently supported by the default `ssl.engine.factory.class` are [JKS, PKCS12, PEM]."##,
    ),
    broker(
        "ssl.principal.mapping.rules",
        STRING,
        Some("DEFAULT"),
        NO_VALIDATOR,
        r##"A list of rules for mapping from distinguished name from the client certificate to short name. The rules are evaluated in order and the first rule that matches a principal name is used to map it to a short name. Any later rules in the list are ignored. By default, distinguished name of the X.500 certificate will be the principal."##,
    ),
    broker(
        "ssl.protocol",
        STRING,
        Some("TLSv1.3"),
        NO_VALIDATOR,
        r##"The SSL protocol used to generate the SSLContext. The default is 'TLSv1.3', which should be fine for most use cases. A typical alternative to the default is 'TLSv1.2'. Allowed values for this config are dependent on the JVM."##,
    ),
    broker(
        "ssl.truststore.certificates",
        PASSWORD,
        None,
        NO_VALIDATOR,
        r##"Trusted certificates in the format specified by 'ssl.truststore.type'. Default SSL engine factory supports only PEM format with X.509 certificates."##,
    ),
    broker(
        "ssl.truststore.location",
        STRING,
        None,
        NO_VALIDATOR,
        r##"The location of the trust store file."##,
    ),
    broker(
        "ssl.truststore.password",
        PASSWORD,
        None,
        NO_VALIDATOR,
        r##"The password for the trust store file. If a password is not set, trust store file configured will still be used, but integrity checking is disabled. Trust store password is not supported for PEM format."##,
    ),
    broker(
        "ssl.truststore.type",
        STRING,
        Some("JKS"),
        NO_VALIDATOR,
        r##"The file format of the trust store file. The values currently supported by the default `ssl.engine.factory.class` are [JKS, PKCS12, PEM]."##,
    ),
    broker(
        "transaction.abort.timed.out.transaction.cleanup.interval.ms",
        INT,
        Some("10000"),
        Validator::AtLeast(1),
        r##"The interval at which to rollback transactions that have timed out"##,
    ),
    broker(
        "transaction.max.timeout.ms",
        INT,
        Some("900000"),
        Validator::AtLeast(1),
        r##"The maximum allowed timeout for transactions. If a client’s requested transaction time exceed this, then the broker will return an error in InitProducerIdRequest. This prevents a client from too large of a timeout, which can stall consumers reading from topics included in the transaction."##,
    ),
    broker(
        "transaction.partition.verification.enable",
        BOOLEAN,
        Some("true"),
        NO_VALIDATOR,
        r##"Enable verification that checks that the partition has been added to the transaction before writing transactional records to the partition"##,
    ),
    broker(
        "transaction.remove.expired.transaction.cleanup.interval.ms",
        INT,
        Some("3600000"),
        Validator::AtLeast(1),
        r##"The interval at which to remove transactions that have expired due to <code>transactional.id.expiration.ms</code> passing"##,
    ),
    broker(
        "transaction.state.log.load.buffer.size",
        INT,
        Some("5242880"),
        Validator::AtLeast(1),
        r##"Batch size for reading from the transaction log segments when loading producer ids and transactions into the cache (soft-limit, overridden if records are too large)."##,
    ),
    broker(
        "transaction.state.log.min.isr",
        INT,
        Some("2"),
        Validator::AtLeast(1),
        r##"The minimum number of replicas that must acknowledge a write to transaction topic in order to be considered successful."##,
    ),
    broker(
        "transaction.state.log.num.partitions",
        INT,
        Some("50"),
        Validator::AtLeast(1),
        r##"The number of partitions for the transaction topic (should not change after deployment)."##,
    ),
    broker(
        "transaction.state.log.replication.factor",
        SHORT,
        Some("3"),
        Validator::AtLeast(1),
        r##"The replication factor for the transaction topic (set higher to ensure availability). Internal topic creation will fail until the cluster size meets this replication factor requirement."##,
    ),
    broker(
        "transaction.state.log.segment.bytes",
        INT,
        Some("104857600"),
        Validator::AtLeast(1),
        r##"The transaction topic segment bytes should be kept relatively small in order to facilitate faster log compaction and cache loads"##,
    ),
    broker(
        "transactional.id.expiration.ms",
        INT,
        Some("604800000"),
        Validator::AtLeast(1),
        r##"The time in ms that the transaction coordinator will wait without receiving any transaction status updates for the current transaction before expiring its transactional id. Transactional IDs will not expire while a the transaction is still ongoing."##,
    ),
    broker(
        "unclean.leader.election.enable",
        BOOLEAN,
        Some("false"),
        NO_VALIDATOR,
        r##"Indicates whether to enable replicas not in the ISR set to be elected as leader as a last resort, even though doing so may result in data loss<p>Note: In KRaft mode, when enabling this config dynamically, it needs to wait for the unclean leader election thread to trigger election periodically (default is 5 minutes). Please run `kafka-leader-election.sh` with `unclean` option to trigger the unclean leader election immediately if needed.</p>"##,
    ),
];

/// The topic config `name`, if Kafka 4.1 defines it.
pub fn topic_config(name: &str) -> Option<&'static ConfigDef> {
    TOPIC_CONFIGS.iter().find(|def| def.name == name)
}

/// The broker config `name`, if this table defines it.
pub fn broker_config(name: &str) -> Option<&'static ConfigDef> {
    BROKER_CONFIGS.iter().find(|def| def.name == name)
}

const fn same(name: &'static str) -> BrokerSynonym {
    BrokerSynonym {
        name,
        multiplier: 1,
    }
}

const HOURS: i64 = 3_600_000;
const MINUTES: i64 = 60_000;

/// Kafka's `ServerTopicConfigSynonyms.ALL_TOPIC_CONFIG_SYNONYMS` for 4.1: topic config →
/// broker synonym chain, highest priority first.
static TOPIC_SYNONYMS: &[(&str, &[BrokerSynonym])] = &[
    ("cleanup.policy", &[same("log.cleanup.policy")]),
    ("compression.gzip.level", &[same("compression.gzip.level")]),
    ("compression.lz4.level", &[same("compression.lz4.level")]),
    ("compression.type", &[same("compression.type")]),
    ("compression.zstd.level", &[same("compression.zstd.level")]),
    (
        "delete.retention.ms",
        &[same("log.cleaner.delete.retention.ms")],
    ),
    (
        "file.delete.delay.ms",
        &[same("log.segment.delete.delay.ms")],
    ),
    ("flush.messages", &[same("log.flush.interval.messages")]),
    (
        "flush.ms",
        &[
            same("log.flush.interval.ms"),
            same("log.flush.scheduler.interval.ms"),
        ],
    ),
    ("index.interval.bytes", &[same("log.index.interval.bytes")]),
    (
        "local.retention.bytes",
        &[same("log.local.retention.bytes")],
    ),
    ("local.retention.ms", &[same("log.local.retention.ms")]),
    (
        "max.compaction.lag.ms",
        &[same("log.cleaner.max.compaction.lag.ms")],
    ),
    ("max.message.bytes", &[same("message.max.bytes")]),
    (
        "message.timestamp.after.max.ms",
        &[same("log.message.timestamp.after.max.ms")],
    ),
    (
        "message.timestamp.before.max.ms",
        &[same("log.message.timestamp.before.max.ms")],
    ),
    (
        "message.timestamp.type",
        &[same("log.message.timestamp.type")],
    ),
    (
        "min.cleanable.dirty.ratio",
        &[same("log.cleaner.min.cleanable.ratio")],
    ),
    (
        "min.compaction.lag.ms",
        &[same("log.cleaner.min.compaction.lag.ms")],
    ),
    ("min.insync.replicas", &[same("min.insync.replicas")]),
    ("preallocate", &[same("log.preallocate")]),
    ("retention.bytes", &[same("log.retention.bytes")]),
    (
        "retention.ms",
        &[
            same("log.retention.ms"),
            scaled("log.retention.minutes", MINUTES),
            scaled("log.retention.hours", HOURS),
        ],
    ),
    ("segment.bytes", &[same("log.segment.bytes")]),
    ("segment.index.bytes", &[same("log.index.size.max.bytes")]),
    (
        "segment.jitter.ms",
        &[
            same("log.roll.jitter.ms"),
            scaled("log.roll.jitter.hours", HOURS),
        ],
    ),
    (
        "segment.ms",
        &[same("log.roll.ms"), scaled("log.roll.hours", HOURS)],
    ),
    (
        "unclean.leader.election.enable",
        &[same("unclean.leader.election.enable")],
    ),
];

/// Whether `name` is a broker config that sets a topic default at run time: Kafka's
/// `DynamicLogConfig.ReconfigurableConfigs`, the first broker synonym of each topic
/// config (`log.retention.ms` is dynamic; `log.retention.hours` is not).
pub fn is_dynamic_log_config(name: &str) -> bool {
    TOPIC_SYNONYMS
        .iter()
        .any(|(_, chain)| chain.first().is_some_and(|s| s.name == name))
}

const fn scaled(name: &'static str, multiplier: i64) -> BrokerSynonym {
    BrokerSynonym { name, multiplier }
}

/// The full synonym chain behind a topic config (Kafka's
/// `ServerTopicConfigSynonyms.ALL_TOPIC_CONFIG_SYNONYMS`), highest priority first: the
/// first explicitly set broker key supplies the value, multiplied by `multiplier`
/// (`log.retention.hours` → ms). The first entry is always the topic config's
/// `broker_synonym`. Empty for topic configs without a broker default
/// (`remote.storage.enable`, the throttled-replica lists, ...).
pub fn topic_config_synonyms(topic_name: &str) -> &'static [BrokerSynonym] {
    TOPIC_SYNONYMS
        .iter()
        .find(|(name, _)| *name == topic_name)
        .map_or(&[], |(_, chain)| *chain)
}

impl ConfigDef {
    /// Check a value as Kafka's ConfigDef would parse + validate it (type parse: Boolean
    /// true/false case-insensitive, Int i32, Short i16, Long i64, Double f64, List
    /// comma-separated trimmed; then the validator). Err(message) with Kafka's wording,
    /// e.g. "Invalid value abc for configuration retention.ms: Not a number of type LONG".
    ///
    /// CLASS values are accepted as names (Ottla loads no classes); PASSWORD and STRING
    /// values are only checked by their validator.
    pub fn validate(&self, value: &str) -> Result<(), String> {
        let trimmed = java_trim(value);
        match self.config_type {
            ConfigType::Boolean => {
                if trimmed.eq_ignore_ascii_case("true") || trimmed.eq_ignore_ascii_case("false") {
                    Ok(())
                } else {
                    Err(self.invalid(value, "Expected value to be either true or false"))
                }
            }
            ConfigType::String | ConfigType::Password | ConfigType::Class => {
                self.check_string(trimmed)
            }
            ConfigType::Int => match trimmed.parse::<i32>() {
                Ok(n) => self.check_integer(i64::from(n)),
                Err(_) => Err(self.not_a_number(value)),
            },
            ConfigType::Short => match trimmed.parse::<i16>() {
                Ok(n) => self.check_integer(i64::from(n)),
                Err(_) => Err(self.not_a_number(value)),
            },
            ConfigType::Long => match trimmed.parse::<i64>() {
                Ok(n) => self.check_integer(n),
                Err(_) => Err(self.not_a_number(value)),
            },
            ConfigType::Double => match parse_java_double(trimmed) {
                Some(d) => self.check_double(d),
                None => Err(self.not_a_number(value)),
            },
            ConfigType::List => self.check_list(&parse_list(trimmed)),
        }
    }

    /// Kafka's `ConfigException(name, value, message)` text.
    fn invalid(&self, shown: &str, message: &str) -> String {
        format!(
            "Invalid value {} for configuration {}: {}",
            shown, self.name, message
        )
    }

    fn not_a_number(&self, value: &str) -> String {
        self.invalid(
            value,
            &format!("Not a number of type {}", self.config_type.kafka_name()),
        )
    }

    fn check_integer(&self, n: i64) -> Result<(), String> {
        let shown = n.to_string();
        match self.validator {
            Validator::AtLeast(min) if n < min => {
                Err(self.invalid(&shown, &format!("Value must be at least {min}")))
            }
            Validator::Between(min, _) if n < min => {
                Err(self.invalid(&shown, &format!("Value must be at least {min}")))
            }
            Validator::Between(_, max) if n > max => {
                Err(self.invalid(&shown, &format!("Value must be no more than {max}")))
            }
            Validator::BetweenOr(min, max, or) if n > max || (n < min && n != or) => Err(self
                .invalid(
                    &shown,
                    &format!("Value must be between {min} and {max} or equal to {or}"),
                )),
            Validator::DoubleBetween(min, _) if (n as f64) < min => {
                Err(self.invalid(&shown, &format!("Value must be at least {min}")))
            }
            Validator::DoubleBetween(_, max) if (n as f64) > max => {
                Err(self.invalid(&shown, &format!("Value must be no more than {max}")))
            }
            Validator::OneOf(_) => self.check_string(&shown),
            _ => Ok(()),
        }
    }

    fn check_double(&self, d: f64) -> Result<(), String> {
        // Kafka's Range compares doubleValue()s, so NaN passes every bound.
        let shown = java_double_to_string(d);
        let (min, max) = match self.validator {
            Validator::AtLeast(min) => (Some(min as f64), None),
            Validator::Between(min, max) => (Some(min as f64), Some(max as f64)),
            Validator::DoubleBetween(min, max) => (Some(min), Some(max)),
            Validator::OneOf(_) => return self.check_string(&shown),
            _ => (None, None),
        };
        if let Some(min) = min {
            if d < min {
                return Err(self.invalid(&shown, &format!("Value must be at least {min}")));
            }
        }
        if let Some(max) = max {
            if d > max {
                return Err(self.invalid(&shown, &format!("Value must be no more than {max}")));
            }
        }
        Ok(())
    }

    fn check_string(&self, s: &str) -> Result<(), String> {
        match self.validator {
            Validator::OneOf(valid) if !valid.contains(&s) => {
                Err(self.invalid(s, &format!("String must be one of: {}", valid.join(", "))))
            }
            _ => Ok(()),
        }
    }

    fn check_list(&self, items: &[&str]) -> Result<(), String> {
        match self.validator {
            Validator::ListOf(valid) | Validator::OneOf(valid) => {
                for item in items {
                    if !valid.contains(item) {
                        return Err(self.invalid(
                            item,
                            &format!("String must be one of: {}", valid.join(", ")),
                        ));
                    }
                }
                Ok(())
            }
            Validator::ThrottledReplicaList => {
                let all_replicas = items
                    .iter()
                    .all(|item| item.is_empty() || is_partition_broker_pair(item));
                if all_replicas || items.concat() == "*" {
                    Ok(())
                } else {
                    Err(self.invalid(
                        &format!("[{}]", items.join(", ")),
                        &format!(
                            "{} must be the literal '*' or a list of replicas in the following format: [partitionId]:[brokerId],[partitionId]:[brokerId],...",
                            self.name
                        ),
                    ))
                }
            }
            _ => Ok(()),
        }
    }
}

/// Java's `String.trim()`: strips every char <= U+0020 from both ends.
fn java_trim(s: &str) -> &str {
    s.trim_matches(|c: char| c <= ' ')
}

/// Kafka's LIST parse of an (already trimmed) string: empty → no items, otherwise a split
/// on `\s*,\s*` keeping empty items.
fn parse_list(trimmed: &str) -> Vec<&str> {
    if trimmed.is_empty() {
        return Vec::new();
    }
    trimmed
        .split(',')
        .map(|item| {
            item.trim_matches(|c: char| matches!(c, ' ' | '\t' | '\n' | '\u{0B}' | '\u{0C}' | '\r'))
        })
        .collect()
}

/// `[0-9]+:[0-9]+`
fn is_partition_broker_pair(s: &str) -> bool {
    match s.split_once(':') {
        Some((partition, broker)) => {
            !partition.is_empty()
                && !broker.is_empty()
                && partition.bytes().all(|b| b.is_ascii_digit())
                && broker.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

/// `Double.parseDouble` on a trimmed string: optional sign, `NaN`, `Infinity`, or a decimal
/// with optional exponent and optional `d`/`D`/`f`/`F` suffix. (Java's hexadecimal float
/// form is not accepted.)
fn parse_java_double(s: &str) -> Option<f64> {
    let (negative, unsigned) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let magnitude = if unsigned == "NaN" {
        f64::NAN
    } else if unsigned == "Infinity" {
        f64::INFINITY
    } else {
        let digits = unsigned
            .strip_suffix(|c: char| matches!(c, 'd' | 'D' | 'f' | 'F'))
            .unwrap_or(unsigned);
        let starts_ok = digits
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_digit() || b == b'.');
        let chars_ok = digits
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
        if !starts_ok || !chars_ok || !digits.bytes().any(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse::<f64>().ok()?
    };
    Some(if negative { -magnitude } else { magnitude })
}

/// `Double.toString`: plain decimal with at least one fraction digit for magnitudes in
/// [1e-3, 1e7), computerized scientific notation (`1.0E10`) otherwise.
fn java_double_to_string(d: f64) -> String {
    if d.is_nan() {
        return "NaN".to_string();
    }
    if d.is_infinite() {
        return if d > 0.0 {
            "Infinity".to_string()
        } else {
            "-Infinity".to_string()
        };
    }
    if d == 0.0 {
        return if d.is_sign_negative() {
            "-0.0".to_string()
        } else {
            "0.0".to_string()
        };
    }
    let magnitude = d.abs();
    if (1e-3..1e7).contains(&magnitude) {
        let s = format!("{d}");
        if s.contains('.') {
            s
        } else {
            format!("{s}.0")
        }
    } else {
        let s = format!("{d:e}");
        let (mantissa, exponent) = s.split_once('e').unwrap_or((s.as_str(), "0"));
        if mantissa.contains('.') {
            format!("{mantissa}E{exponent}")
        } else {
            format!("{mantissa}.0E{exponent}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_table(table: &[ConfigDef]) {
        for pair in table.windows(2) {
            assert!(
                pair[0].name < pair[1].name,
                "{} must sort before {}",
                pair[0].name,
                pair[1].name
            );
        }
        for def in table {
            if let Some(default) = def.default {
                assert_eq!(def.validate(default), Ok(()), "default of {}", def.name);
            }
            assert_eq!(
                def.sensitive,
                def.config_type == ConfigType::Password,
                "{}",
                def.name
            );
            assert!(!def.documentation.is_empty(), "{}", def.name);
        }
    }

    #[test]
    fn tables_are_sorted_unique_and_defaults_are_valid() {
        check_table(TOPIC_CONFIGS);
        check_table(BROKER_CONFIGS);
        assert_eq!(TOPIC_CONFIGS.len(), 33);
        assert!(BROKER_CONFIGS
            .iter()
            .all(|def| def.broker_synonym.is_none()));
    }

    #[test]
    fn every_broker_synonym_is_defined_with_the_same_type() {
        for def in TOPIC_CONFIGS {
            let chain = topic_config_synonyms(def.name);
            assert_eq!(
                chain.first().map(|s| s.name),
                def.broker_synonym,
                "{}",
                def.name
            );
            for synonym in chain {
                let broker = broker_config(synonym.name).unwrap_or_else(|| {
                    panic!("{} (synonym of {}) missing", synonym.name, def.name)
                });
                if synonym.multiplier == 1 {
                    assert_eq!(
                        broker.config_type, def.config_type,
                        "{} vs {}",
                        def.name, broker.name
                    );
                }
            }
        }
        assert!(topic_config_synonyms("remote.storage.enable").is_empty());
    }

    #[test]
    fn known_values() {
        let topic = |name| topic_config(name).unwrap();
        let broker = |name| broker_config(name).unwrap();
        assert_eq!(topic("retention.ms").default, Some("604800000"));
        assert_eq!(
            topic("retention.ms").broker_synonym,
            Some("log.retention.ms")
        );
        assert_eq!(topic("max.message.bytes").default, Some("1048588"));
        assert_eq!(
            topic("max.message.bytes").broker_synonym,
            Some("message.max.bytes")
        );
        assert_eq!(topic("segment.bytes").default, Some("1073741824"));
        assert_eq!(topic("cleanup.policy").default, Some("delete"));
        assert_eq!(
            topic("cleanup.policy").broker_synonym,
            Some("log.cleanup.policy")
        );
        assert_eq!(topic("compression.type").default, Some("producer"));
        assert_eq!(
            topic("message.timestamp.after.max.ms").default,
            Some("3600000")
        );
        assert_eq!(
            topic("flush.ms").broker_synonym,
            Some("log.flush.interval.ms")
        );
        assert_eq!(topic("segment.ms").broker_synonym, Some("log.roll.ms"));
        assert_eq!(
            topic("leader.replication.throttled.replicas").default,
            Some("")
        );
        assert_eq!(topic("remote.storage.enable").broker_synonym, None);
        assert_eq!(broker("num.partitions").default, Some("1"));
        assert_eq!(broker("log.retention.ms").default, None);
        assert_eq!(broker("log.retention.hours").default, Some("168"));
        assert_eq!(
            broker("log.message.timestamp.after.max.ms").default,
            Some("3600000")
        );
        assert_eq!(
            broker("offsets.topic.replication.factor").config_type,
            ConfigType::Short
        );
        assert_eq!(broker("node.id").default, None);
        assert!(broker("ssl.keystore.password").sensitive);
        assert!(topic_config("message.downconversion.enable").is_none());
        assert!(topic_config("log.retention.ms").is_none());
        assert!(broker_config("retention.ms").is_none());
        assert_eq!(ConfigType::Boolean.kafka_id(), 1);
        assert_eq!(ConfigType::Long.kafka_id(), 5);
        assert_eq!(ConfigType::Password.kafka_id(), 9);
    }

    fn err(table: fn(&str) -> Option<&'static ConfigDef>, name: &str, value: &str) -> String {
        table(name).unwrap().validate(value).unwrap_err()
    }

    fn ok(table: fn(&str) -> Option<&'static ConfigDef>, name: &str, value: &str) {
        assert_eq!(
            table(name).unwrap().validate(value),
            Ok(()),
            "{name}={value:?}"
        );
    }

    #[test]
    fn type_parse_errors_use_kafka_wording() {
        assert_eq!(
            err(topic_config, "retention.ms", "abc"),
            "Invalid value abc for configuration retention.ms: Not a number of type LONG"
        );
        assert_eq!(
            err(topic_config, "max.message.bytes", "3000000000"),
            "Invalid value 3000000000 for configuration max.message.bytes: Not a number of type INT"
        );
        assert_eq!(
            err(broker_config, "offsets.topic.replication.factor", "40000"),
            "Invalid value 40000 for configuration offsets.topic.replication.factor: Not a number of type SHORT"
        );
        assert_eq!(
            err(topic_config, "preallocate", "yes"),
            "Invalid value yes for configuration preallocate: Expected value to be either true or false"
        );
        assert_eq!(
            err(topic_config, "min.cleanable.dirty.ratio", "half"),
            "Invalid value half for configuration min.cleanable.dirty.ratio: Not a number of type DOUBLE"
        );
        assert!(topic_config("min.cleanable.dirty.ratio")
            .unwrap()
            .validate("inf")
            .is_err());
        ok(topic_config, "preallocate", " TRUE ");
        ok(topic_config, "retention.ms", " 1000 ");
        ok(topic_config, "retention.ms", "+1000");
        ok(topic_config, "min.cleanable.dirty.ratio", "0.75");
        ok(topic_config, "min.cleanable.dirty.ratio", "1");
        ok(topic_config, "min.cleanable.dirty.ratio", "5e-1");
    }

    #[test]
    fn validator_errors_use_kafka_wording() {
        assert_eq!(
            err(topic_config, "segment.bytes", "1000"),
            "Invalid value 1000 for configuration segment.bytes: Value must be at least 1048576"
        );
        ok(topic_config, "segment.bytes", "1048576");
        assert_eq!(
            err(topic_config, "retention.ms", "-2"),
            "Invalid value -2 for configuration retention.ms: Value must be at least -1"
        );
        ok(topic_config, "retention.ms", "-1");
        assert_eq!(
            err(topic_config, "min.insync.replicas", "0"),
            "Invalid value 0 for configuration min.insync.replicas: Value must be at least 1"
        );
        assert_eq!(
            err(topic_config, "min.cleanable.dirty.ratio", "1.5"),
            "Invalid value 1.5 for configuration min.cleanable.dirty.ratio: Value must be no more than 1"
        );
        assert_eq!(
            err(topic_config, "min.cleanable.dirty.ratio", "2"),
            "Invalid value 2.0 for configuration min.cleanable.dirty.ratio: Value must be no more than 1"
        );
        assert_eq!(
            err(topic_config, "min.cleanable.dirty.ratio", "-0.1"),
            "Invalid value -0.1 for configuration min.cleanable.dirty.ratio: Value must be at least 0"
        );
        assert_eq!(
            err(topic_config, "compression.type", "GZIP"),
            "Invalid value GZIP for configuration compression.type: String must be one of: uncompressed, zstd, lz4, snappy, gzip, producer"
        );
        ok(topic_config, "compression.type", "zstd");
        assert_eq!(
            err(topic_config, "message.timestamp.type", "createtime"),
            "Invalid value createtime for configuration message.timestamp.type: String must be one of: CreateTime, LogAppendTime"
        );
        ok(topic_config, "message.timestamp.type", "LogAppendTime");
        assert_eq!(
            err(topic_config, "compression.gzip.level", "0"),
            "Invalid value 0 for configuration compression.gzip.level: Value must be between 1 and 9 or equal to -1"
        );
        ok(topic_config, "compression.gzip.level", "-1");
        ok(topic_config, "compression.gzip.level", "9");
        assert!(topic_config("compression.gzip.level")
            .unwrap()
            .validate("10")
            .is_err());
        assert_eq!(
            err(topic_config, "compression.lz4.level", "18"),
            "Invalid value 18 for configuration compression.lz4.level: Value must be no more than 17"
        );
        ok(topic_config, "compression.zstd.level", "-131072");
    }

    #[test]
    fn list_validation() {
        ok(topic_config, "cleanup.policy", "compact");
        ok(topic_config, "cleanup.policy", "delete, compact");
        ok(topic_config, "cleanup.policy", "");
        assert_eq!(
            err(topic_config, "cleanup.policy", "compact,foo"),
            "Invalid value foo for configuration cleanup.policy: String must be one of: compact, delete"
        );
        assert_eq!(
            err(topic_config, "cleanup.policy", "compact,"),
            "Invalid value  for configuration cleanup.policy: String must be one of: compact, delete"
        );
        ok(broker_config, "process.roles", "broker,controller");
        assert!(broker_config("process.roles")
            .unwrap()
            .validate("zookeeper")
            .is_err());
        ok(topic_config, "leader.replication.throttled.replicas", "*");
        ok(
            topic_config,
            "leader.replication.throttled.replicas",
            "0:1, 1:2",
        );
        ok(topic_config, "follower.replication.throttled.replicas", "");
        assert_eq!(
            err(topic_config, "follower.replication.throttled.replicas", "0:1,a:b"),
            "Invalid value [0:1, a:b] for configuration follower.replication.throttled.replicas: follower.replication.throttled.replicas must be the literal '*' or a list of replicas in the following format: [partitionId]:[brokerId],[partitionId]:[brokerId],..."
        );
    }

    #[test]
    fn java_number_formatting() {
        assert_eq!(java_double_to_string(0.5), "0.5");
        assert_eq!(java_double_to_string(2.0), "2.0");
        assert_eq!(java_double_to_string(1e10), "1.0E10");
        assert_eq!(java_double_to_string(1.5e-5), "1.5E-5");
        assert_eq!(java_double_to_string(f64::MAX), "1.7976931348623157E308");
        assert_eq!(parse_java_double("1.7976931348623157E308"), Some(f64::MAX));
        assert_eq!(parse_java_double("-Infinity"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_java_double("1d"), Some(1.0));
        assert_eq!(parse_java_double("--1"), None);
        assert_eq!(parse_java_double("nan"), None);
        assert_eq!(parse_java_double(""), None);
    }
}
