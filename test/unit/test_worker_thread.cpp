// Unit tests for WorkerThread: jobs run in order on the helper thread; stop_all() (what a process
// calls as it exits without unwinding) lets the running job finish and joins every live helper
// thread, after which the destructor has nothing left to do.
#include "cpp_only.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <thread>
#include <vector>

#include "worker_thread.hpp"

using namespace squaresync;

namespace {

// Waits for the helper to report its jobs done (take_done), at most `polls` x 10 ms (a hang guard).
std::vector<void*> take_all(WorkerThread& t, std::size_t n, int polls = 3000) {
    std::vector<void*> done;
    for (int i = 0; i < polls && done.size() < n; ++i) {
        auto d = t.take_done();
        done.insert(done.end(), d.begin(), d.end());
        if (done.size() < n) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return done;
}

}  // namespace

TEST(WorkerThread, RunsJobsInOrderOffTheCallingThread) {
    std::atomic<int> notified{0};
    WorkerThread t([&] { ++notified; });
    const auto caller = std::this_thread::get_id();
    std::vector<int> order;
    std::vector<std::thread::id> ids(3);
    int tags[3];
    for (int i = 0; i < 3; ++i)
        t.submit(&tags[i], [&, i] {
            order.push_back(i);
            ids[i] = std::this_thread::get_id();
        });
    const auto done = take_all(t, 3);
    ASSERT_EQ(done, (std::vector<void*>{&tags[0], &tags[1], &tags[2]}));
    EXPECT_EQ(order, (std::vector<int>{0, 1, 2}));
    for (const auto& id : ids) EXPECT_NE(id, caller);
    EXPECT_EQ(notified.load(), 3);
}

TEST(WorkerThread, StopAllLetsTheRunningJobFinishAndJoins) {
    std::promise<void> started, release;
    auto release_f = release.get_future().share();
    std::atomic<bool> first_finished{false};
    auto t = std::make_unique<WorkerThread>(nullptr);
    int a;
    t->submit(&a, [&] {
        started.set_value();
        release_f.wait();
        first_finished = true;
    });
    started.get_future().wait();
    // What stop_all() finds as it returns: the running job finished (it waited for it).
    std::atomic<bool> entering{false};
    auto stopping = std::async(std::launch::async, [&] {
        entering = true;
        WorkerThread::stop_all();
        return first_finished.load();
    });
    while (!entering.load()) std::this_thread::yield();
    // However long it is given, it does not return while the job runs.
    EXPECT_EQ(stopping.wait_for(std::chrono::milliseconds(50)), std::future_status::timeout);
    release.set_value();
    EXPECT_TRUE(stopping.get());
    EXPECT_EQ(t->take_done(), std::vector<void*>{&a});
    int b;
    t->submit(&b, [] {});  // nothing runs it any more
    EXPECT_TRUE(take_all(*t, 1, 20).empty());
    t.reset();  // the destructor after stop_all(): nothing left to join
}
