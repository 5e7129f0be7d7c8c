//! The error codes a response carries, for the per-API error counters (`metrics`).
//!
//! `frame_response` takes only bodies that implement [`ErrorCodes`], so every response the
//! broker frames through the codec is counted; Fetch (framed by hand, for splicing) and
//! DescribeConfigs v0 count theirs where they write them.

use kafka_protocol::messages::*;

/// Calls `each` with every error code in the response, NONE included (the caller skips it).
pub trait ErrorCodes {
    fn error_codes(&self, each: &mut dyn FnMut(i16));
}

impl ErrorCodes for ApiVersionsResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        each(self.error_code);
    }
}

impl ErrorCodes for ProduceResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        for topic in &self.responses {
            for partition in &topic.partition_responses {
                each(partition.error_code);
            }
        }
    }
}

impl ErrorCodes for ListOffsetsResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        for topic in &self.topics {
            for partition in &topic.partitions {
                each(partition.error_code);
            }
        }
    }
}

impl ErrorCodes for MetadataResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        each(self.error_code);
        for topic in &self.topics {
            each(topic.error_code);
            for partition in &topic.partitions {
                each(partition.error_code);
            }
        }
    }
}

impl ErrorCodes for CreateTopicsResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        for topic in &self.topics {
            each(topic.error_code);
        }
    }
}

impl ErrorCodes for DeleteTopicsResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        for topic in &self.responses {
            each(topic.error_code);
        }
    }
}

impl ErrorCodes for DeleteGroupsResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        for group in &self.results {
            each(group.error_code);
        }
    }
}

impl ErrorCodes for DescribeConfigsResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        for result in &self.results {
            each(result.error_code);
        }
    }
}

impl ErrorCodes for DescribeGroupsResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        for group in &self.groups {
            each(group.error_code);
        }
    }
}

impl ErrorCodes for DescribeClusterResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        each(self.error_code);
    }
}

impl ErrorCodes for FindCoordinatorResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        if self.coordinators.is_empty() {
            each(self.error_code); // v0-3: one key, top-level fields
        }
        for coordinator in &self.coordinators {
            each(coordinator.error_code);
        }
    }
}

impl ErrorCodes for HeartbeatResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        each(self.error_code);
    }
}

impl ErrorCodes for InitProducerIdResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        each(self.error_code);
    }
}

impl ErrorCodes for JoinGroupResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        each(self.error_code);
    }
}

impl ErrorCodes for LeaveGroupResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        each(self.error_code);
        for member in &self.members {
            each(member.error_code);
        }
    }
}

impl ErrorCodes for ListGroupsResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        each(self.error_code);
    }
}

impl ErrorCodes for OffsetCommitResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        for topic in &self.topics {
            for partition in &topic.partitions {
                each(partition.error_code);
            }
        }
    }
}

impl ErrorCodes for OffsetFetchResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        each(self.error_code);
        for topic in &self.topics {
            for partition in &topic.partitions {
                each(partition.error_code);
            }
        }
        for group in &self.groups {
            each(group.error_code);
            for topic in &group.topics {
                for partition in &topic.partitions {
                    each(partition.error_code);
                }
            }
        }
    }
}

impl ErrorCodes for SyncGroupResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        each(self.error_code);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(response: &dyn ErrorCodes) -> Vec<i16> {
        let mut found = Vec::new();
        response.error_codes(&mut |code| found.push(code));
        found
    }

    #[test]
    fn nested_codes_are_all_seen() {
        use kafka_protocol::messages::produce_response::*;
        let response =
            ProduceResponse::default().with_responses(vec![TopicProduceResponse::default()
                .with_partition_responses(vec![
                    PartitionProduceResponse::default().with_error_code(0),
                    PartitionProduceResponse::default().with_error_code(6),
                ])]);
        assert_eq!(codes(&response), vec![0, 6]);
        let heartbeat = HeartbeatResponse::default().with_error_code(27);
        assert_eq!(codes(&heartbeat), vec![27]);
    }
}

impl ErrorCodes for AlterConfigsResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        for resource in &self.responses {
            each(resource.error_code);
        }
    }
}

impl ErrorCodes for IncrementalAlterConfigsResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        for resource in &self.responses {
            each(resource.error_code);
        }
    }
}
