// worker_thread.cpp: the helper thread (see worker_thread.hpp): a queue, one thread, signals blocked.
#include "cpp_only.hpp"

#include "worker_thread.hpp"

#include <pthread.h>
#include <signal.h>

#include <system_error>

namespace squaresync {

namespace {

// The live helper threads of the process. Never destroyed: stop_all() may run during exit().
std::mutex& live_mutex() {
    static auto* m = new std::mutex;
    return *m;
}
std::vector<WorkerThread*>& live() {
    static auto* v = new std::vector<WorkerThread*>;
    return *v;
}

}  // namespace

void WorkerThread::unlist() {
    std::lock_guard<std::mutex> lock(live_mutex());
    auto& v = live();
    for (auto it = v.begin(); it != v.end(); ++it)
        if (*it == this) {
            v.erase(it);
            return;
        }
}

WorkerThread::WorkerThread(std::function<void()> notify) : notify_(std::move(notify)) {
    {
        std::lock_guard<std::mutex> lock(live_mutex());
        live().push_back(this);  // before the thread exists: a failure here leaves nothing to join
    }
    // The new thread inherits the creating thread's signal mask: block everything around its
    // creation so that no signal meant for the backend (SIGTERM, SIGALRM, SIGUSR1...) lands on it.
    sigset_t all, old;
    sigfillset(&all);
    if (int rc = pthread_sigmask(SIG_SETMASK, &all, &old); rc != 0) {
        unlist();
        throw std::system_error(rc, std::generic_category(), "pthread_sigmask");
    }
    try {
        thread_ = std::thread([this] { loop(); });
    } catch (...) {
        pthread_sigmask(SIG_SETMASK, &old, nullptr);
        unlist();
        throw;
    }
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

WorkerThread::~WorkerThread() {
    unlist();
    shut_down();
}

void WorkerThread::shut_down() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        stop_ = true;
        queue_.clear();
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
}

void WorkerThread::stop_all() {
    std::lock_guard<std::mutex> lock(live_mutex());
    for (auto* t : live()) t->shut_down();
}

void WorkerThread::submit(void* tag, std::function<void()> job) {
    {
        std::lock_guard<std::mutex> lock(mu_);
        queue_.push_back({tag, std::move(job)});
    }
    cv_.notify_one();
}

std::vector<void*> WorkerThread::take_done() {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<void*> d;
    d.swap(done_);
    return d;
}

void WorkerThread::loop() {
    for (;;) {
        Job job;
        {
            std::unique_lock<std::mutex> lock(mu_);
            cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
            if (stop_) return;
            job = std::move(queue_.front());
            queue_.pop_front();
        }
        job.run();
        {
            std::lock_guard<std::mutex> lock(mu_);
            done_.push_back(job.tag);
        }
        if (notify_) notify_();
    }
}

}  // namespace squaresync
