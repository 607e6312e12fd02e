// worker_thread.hpp: one helper thread for pure C++ work (parsing and mapping Square's pages) that
// overlaps the calling thread's PostgreSQL work. It starts with every signal blocked, so
// PostgreSQL's signal handlers only ever run on the backend's own thread, and it never calls into
// PostgreSQL (nothing in src/core can). Jobs run one at a time, in the order submitted.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace squaresync {

class WorkerThread {
public:
    // notify is called on the helper thread after each job (e.g. curl_multi_wakeup); must not throw.
    explicit WorkerThread(std::function<void()> notify);
    // Drops the jobs not yet started, waits for the running one, joins the thread.
    ~WorkerThread();
    WorkerThread(const WorkerThread&) = delete;
    WorkerThread& operator=(const WorkerThread&) = delete;

    // Queues job; tag comes back from take_done() once it ran. A job must not throw.
    void submit(void* tag, std::function<void()> job);
    // The tags of the jobs finished since the last call, in the order they ran.
    std::vector<void*> take_done();

    // Stops every helper thread of the process as the destructor does (the running job finishes
    // first): for a process that exits without unwinding its stack (PostgreSQL's FATAL calls
    // exit()), so that no helper thread runs on while static objects are destroyed.
    static void stop_all();

private:
    void loop();
    void shut_down();  // once: what the destructor and stop_all() do
    void unlist();     // off the list stop_all() walks

    struct Job {
        void* tag;
        std::function<void()> run;
    };
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<Job> queue_;
    std::vector<void*> done_;
    bool stop_ = false;
    std::function<void()> notify_;
    std::thread thread_;
};

}  // namespace squaresync
