// sarama-check: Go's sarama (Debian's golang-github-shopify-sarama-dev, 1.22) against a
// broker, with config.Version = V2_2_0_0: metadata, cluster admin (create, list, describe
// configs), the sync and async producers, a partition consumer, a consumer group of two members
// that commits and resumes, and the offset manager's clean close. Prints one "ok ..." line per
// step; exits 1 on the first failure.
//
// Built in GOPATH mode from Debian's packages: GOPATH=/usr/share/gocode GO111MODULE=off.
package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/Shopify/sarama"
)

func fail(format string, args ...interface{}) {
	fmt.Printf("FAIL "+format+"\n", args...)
	os.Exit(1)
}

func must(err error, what string) {
	if err != nil {
		fail("%s: %v", what, err)
	}
}

func newConfig() *sarama.Config {
	config := sarama.NewConfig()
	config.Version = sarama.V2_2_0_0
	config.ClientID = "sarama-check"
	config.Producer.Return.Successes = true
	config.Producer.RequiredAcks = sarama.WaitForAll
	config.Consumer.Offsets.Initial = sarama.OffsetOldest
	config.Consumer.Offsets.CommitInterval = 200 * time.Millisecond
	config.Consumer.Group.Rebalance.Timeout = 10 * time.Second
	config.Metadata.Retry.Backoff = 100 * time.Millisecond
	return config
}

// groupHandler records every message it is given and marks it consumed.
type groupHandler struct {
	mu   *sync.Mutex
	seen map[string]int
	name string
}

func (h groupHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h groupHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (h groupHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for msg := range claim.Messages() {
		h.mu.Lock()
		h.seen[string(msg.Value)]++
		h.mu.Unlock()
		sess.MarkMessage(msg, "")
	}
	return nil
}

// consumeGroup runs `members` members of group `group` on `topic` until `want` distinct values
// were seen (or the deadline), then closes them cleanly. Returns how often each value was seen.
func consumeGroup(brokers []string, group, topic string, members, want int) map[string]int {
	mu := &sync.Mutex{}
	seen := map[string]int{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var groups []sarama.ConsumerGroup
	for i := 0; i < members; i++ {
		g, err := sarama.NewConsumerGroup(brokers, group, newConfig())
		must(err, "new consumer group")
		groups = append(groups, g)
		handler := groupHandler{mu: mu, seen: seen, name: fmt.Sprintf("member-%d", i)}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if err := g.Consume(ctx, []string{topic}, handler); err != nil && ctx.Err() == nil {
					fmt.Printf("consume (retrying): %v\n", err)
					time.Sleep(200 * time.Millisecond)
				}
			}
		}()
		go func() {
			for err := range g.Errors() {
				fmt.Printf("group error: %v\n", err)
			}
		}()
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		if n >= want {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Let the last marks reach a commit, then leave cleanly.
	time.Sleep(600 * time.Millisecond)
	cancel()
	wg.Wait()
	for _, g := range groups {
		must(g.Close(), "close consumer group")
	}
	mu.Lock()
	defer mu.Unlock()
	return seen
}

func main() {
	if len(os.Args) != 3 {
		fail("usage: sarama-check BROKER TOPIC")
	}
	brokers := []string{os.Args[1]}
	topic := os.Args[2]
	config := newConfig()

	admin, err := sarama.NewClusterAdmin(brokers, config)
	must(err, "cluster admin")
	must(admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 2, ReplicationFactor: 1}, false), "create topic")
	topics, err := admin.ListTopics()
	must(err, "list topics")
	detail, ok := topics[topic]
	if !ok || detail.NumPartitions != 2 {
		fail("list topics: %s missing or wrong (%+v)", topic, detail)
	}
	entries, err := admin.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: topic})
	must(err, "describe topic config")
	found := false
	for _, e := range entries {
		if e.Name == "retention.ms" {
			found = true
		}
	}
	if !found {
		fail("describe config: no retention.ms in %+v", entries)
	}
	must(admin.Close(), "close admin")
	fmt.Println("ok admin: create, list, describe configs")

	client, err := sarama.NewClient(brokers, config)
	must(err, "client")
	must(client.RefreshMetadata(topic), "metadata")
	partitions, err := client.Partitions(topic)
	must(err, "partitions")
	if len(partitions) != 2 {
		fail("metadata: %d partitions", len(partitions))
	}
	fmt.Println("ok metadata")

	producer, err := sarama.NewSyncProducerFromClient(client)
	must(err, "sync producer")
	for i := 0; i < 50; i++ {
		_, _, err := producer.SendMessage(&sarama.ProducerMessage{
			Topic: topic, Partition: int32(i % 2), Value: sarama.StringEncoder(fmt.Sprintf("sync-%d", i)),
		})
		must(err, "sync send")
	}
	must(producer.Close(), "close sync producer")
	fmt.Println("ok sync producer: 50 messages")

	async, err := sarama.NewAsyncProducer(brokers, config)
	must(err, "async producer")
	for i := 0; i < 50; i++ {
		async.Input() <- &sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder(fmt.Sprintf("async-%d", i))}
	}
	for i := 0; i < 50; i++ {
		select {
		case <-async.Successes():
		case perr := <-async.Errors():
			fail("async send: %v", perr.Err)
		case <-time.After(30 * time.Second):
			fail("async send: no acknowledgement")
		}
	}
	must(async.Close(), "close async producer")
	fmt.Println("ok async producer: 50 messages")

	consumer, err := sarama.NewConsumerFromClient(client)
	must(err, "consumer")
	pc, err := consumer.ConsumePartition(topic, 0, sarama.OffsetOldest)
	must(err, "consume partition")
	got := 0
	for got < 25 {
		select {
		case msg := <-pc.Messages():
			if msg.Offset != int64(got) {
				fail("partition consumer: offset %d, expected %d", msg.Offset, got)
			}
			got++
		case <-time.After(30 * time.Second):
			fail("partition consumer: only %d messages", got)
		}
	}
	must(pc.Close(), "close partition consumer")
	must(consumer.Close(), "close consumer")
	fmt.Println("ok partition consumer: 25 messages in order")

	// The group: two members share the 100 messages and commit; then one more member of the same
	// group, after 20 more messages, gets exactly the new ones.
	seen := consumeGroup(brokers, "sarama-group", topic, 2, 100)
	if len(seen) != 100 {
		fail("group of two saw %d distinct messages", len(seen))
	}
	fmt.Println("ok consumer group of two: 100 messages")
	producer, err = sarama.NewSyncProducer(brokers, config)
	must(err, "sync producer")
	for i := 0; i < 20; i++ {
		_, _, err := producer.SendMessage(&sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder(fmt.Sprintf("late-%d", i))})
		must(err, "sync send")
	}
	must(producer.Close(), "close sync producer")
	resumed := consumeGroup(brokers, "sarama-group", topic, 1, 20)
	var keys []string
	for k := range resumed {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if len(resumed) != 20 || keys[0] != "late-0" || keys[19] != "late-9" {
		fail("resumed group got %d messages, not the 20 new ones: %v", len(resumed), keys)
	}
	fmt.Println("ok consumer group resumes from its commits: the 20 new messages only")

	om, err := sarama.NewOffsetManagerFromClient("sarama-offsets", client)
	must(err, "offset manager")
	pom, err := om.ManagePartition(topic, 1)
	must(err, "manage partition")
	pom.MarkOffset(7, "meta")
	closed := make(chan error, 1)
	go func() {
		pom.AsyncClose()
		for err := range pom.Errors() {
			closed <- err
			return
		}
		closed <- om.Close()
	}()
	select {
	case err := <-closed:
		must(err, "offset manager close")
	case <-time.After(20 * time.Second):
		fail("offset manager close hangs")
	}
	fetch, err := sarama.NewOffsetManagerFromClient("sarama-offsets", client)
	must(err, "offset manager")
	pom, err = fetch.ManagePartition(topic, 1)
	must(err, "manage partition")
	if offset, meta := pom.NextOffset(); offset != 7 || meta != "meta" {
		fail("offset manager: committed offset %d %q, expected 7 \"meta\"", offset, meta)
	}
	must(pom.Close(), "close partition offset manager")
	must(fetch.Close(), "close offset manager")
	must(client.Close(), "close client")
	fmt.Println("ok offset manager: commit, clean close, resume")
	fmt.Println("PASS")
}
